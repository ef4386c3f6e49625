"""consumers.retrieval."""
