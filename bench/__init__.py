"""Benchmarks: each prints its command, the hardware and its figures, and writes bench/results/<name>.json."""
