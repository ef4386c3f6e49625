"""consumers.leases."""
