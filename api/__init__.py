"""fraudflow api package."""
