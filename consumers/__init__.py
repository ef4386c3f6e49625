"""fraudflow consumers package."""
