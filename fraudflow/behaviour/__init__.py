"""Behaviour features: what a transaction looks like against the history of its user, device and IP."""
