"""The lease table as operators read it: `fraudflow consume status` and the dashboard's pipeline panel."""

from __future__ import annotations

from typing import Any

from fraudflow.db import Connection


async def lease_status(
    conn: Connection, application: str | None = None, stream: str | None = None
) -> list[dict[str, Any]]:
    """Every lease (of one application and stream, when given): owner, epoch, lag, ages and failures."""
    rows = await conn.fetch(
        """SELECT application, stream, shard_id, owner, epoch, checkpoint, millis_behind_latest,
                  failures, last_error,
                  extract(epoch FROM now() - checkpointed_at) AS checkpoint_age_s,
                  extract(epoch FROM now() - updated_at) AS renewed_s_ago,
                  extract(epoch FROM now() - last_error_at) AS failed_s_ago
             FROM kinesis_leases
            WHERE ($1::text IS NULL OR application = $1) AND ($2::text IS NULL OR stream = $2)
            ORDER BY application, stream, shard_id""",
        application,
        stream,
    )
    return [dict(r) for r in rows]
