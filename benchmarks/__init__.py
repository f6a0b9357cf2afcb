"""Benchmarks, one module per component: run from the repository root as ``python -m benchmarks.<name>``."""
