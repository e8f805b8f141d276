"""Tests of the edge: the command line, the option table, what a build tells a person, the installed package."""
