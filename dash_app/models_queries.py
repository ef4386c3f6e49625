"""What the models page reads: the challenger's shadow scores against the champion's, with labels, and the
drift watch's hourly reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

PROBABILITY_BINS = 24  # over log10(p) from 1e-6 to 1: fraud probabilities live near 0


async def challenge(conn: asyncpg.Connection, since: datetime) -> dict[str, Any] | None:
    """The latest champion and challenger pair scored since `since`: agreement of their decisions, score
    distributions, and precision and recall against the labels known; None without shadow scores."""
    pair = await conn.fetchrow(
        """SELECT champion_version, challenger_version FROM challenger_scores WHERE scored_at >= $1
           GROUP BY 1, 2 ORDER BY max(scored_at) DESC LIMIT 1""",
        since,
    )
    if pair is None:
        return None
    args = (since, pair["champion_version"], pair["challenger_version"])
    where = "scored_at >= $1 AND champion_version = $2 AND challenger_version = $3"
    agreement = await conn.fetch(
        f"""SELECT champion_decision, decision AS challenger_decision, count(*) AS n
            FROM challenger_scores WHERE {where} GROUP BY 1, 2""",
        *args,
    )
    bins = await conn.fetch(
        f"""SELECT 'champion' AS model, width_bucket(log(greatest(champion_proba, 1e-6)::numeric), -6, 0, $4) AS bin,
                   count(*) AS n
            FROM challenger_scores WHERE {where} GROUP BY 1, 2
            UNION ALL
            SELECT 'challenger', width_bucket(log(greatest(fraud_proba, 1e-6)::numeric), -6, 0, $4), count(*)
            FROM challenger_scores WHERE {where} GROUP BY 1, 2""",
        *args,
        PROBABILITY_BINS,
    )
    labelled = await conn.fetchrow(
        f"""SELECT count(*) AS labelled,
                   count(*) FILTER (WHERE l.label = 'fraud') AS frauds,
                   count(*) FILTER (WHERE c.champion_decision <> 'approve') AS champion_flagged,
                   count(*) FILTER (WHERE c.champion_decision <> 'approve' AND l.label = 'fraud') AS champion_caught,
                   count(*) FILTER (WHERE c.decision <> 'approve') AS challenger_flagged,
                   count(*) FILTER (WHERE c.decision <> 'approve' AND l.label = 'fraud') AS challenger_caught
            FROM challenger_scores c JOIN latest_labels l USING (event_id) WHERE {where}""",
        *args,
    )
    return {
        "champion": pair["champion_version"],
        "challenger": pair["challenger_version"],
        "agreement": [dict(r) for r in agreement],
        "bins": [dict(r) for r in bins],
        "labels": dict(labelled) if labelled else {},
    }


async def drift(conn: asyncpg.Connection, since: datetime) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT window_start, model_version, transactions, score_psi, max_feature, max_feature_psi,
                  approve_share, review_share, decline_share, degraded_share
           FROM drift_reports WHERE window_start >= $1 AND transactions > 0
           ORDER BY window_start, model_version""",
        since,
    )
    return [dict(r) for r in rows]
