"""Build orchestration: work units, executors, the cache, owned folders, progress, the stages."""
