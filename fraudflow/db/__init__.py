"""PostgreSQL: schema migrations and connection helpers."""
