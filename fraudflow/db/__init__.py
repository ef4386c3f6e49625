"""PostgreSQL: where it is (`target`: a URL, or a secret whose password rotates) and the schema (`migrate`)."""
