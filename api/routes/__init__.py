"""HTTP routes: thin translations from HTTP to calls into the scoring service and fraudflow core."""
