"""Benchmarks behind `make bench`: every figure is a ratio against a baseline of the same run."""
