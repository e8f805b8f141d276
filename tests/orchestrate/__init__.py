"""Tests of gallery/orchestrate: the cache, work units, progress and status, executors and Ray, determinism, what a build owns, crash safety."""
