"""consumers.coordinator."""
