"""Comparison servers for bench/api.py: the framework's ceiling and the reference design's naive path."""
