"""consumers.lifecycle."""
