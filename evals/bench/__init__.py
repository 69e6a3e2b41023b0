"""Benchmarks run by ``sanad bench`` (never timed tests)."""
