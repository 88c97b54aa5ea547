"""Benchmark harness: `python -m benchmarks.run [--quick]` (or `make bench`)."""
