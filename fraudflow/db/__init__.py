"""PostgreSQL: where it is (`target`: a URL, or a secret whose password rotates) and the schema (`migrate`)."""

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection, or one lent by a pool.
Connection = asyncpg.Connection | PoolConnectionProxy
