"""Benchmarks: measured, never asserted in tests. `make bench` runs them."""
