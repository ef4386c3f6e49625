"""Decisions a fraud team runs: allow and deny lists, rules in CEL, the model's policy, and the reasons."""
