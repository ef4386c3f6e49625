"""consumers.processor."""
