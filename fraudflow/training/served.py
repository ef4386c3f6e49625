"""A training set from the loop: the stored transactions with the behaviour features they were scored with
(as served, not recomputed) and the labels known at a cutoff.

Label delay: a chargeback arrives weeks after the payment, so a transaction more recent than the cutoff minus
the delay may be a fraud nobody has reported yet; those are left out (and counted), and the older ones
without a fraud label known at the cutoff are taken as legitimate. Labels learnt after the cutoff are not
used, so a set built twice with the same window and cutoff is the same set, whatever was labelled since.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import orjson

from fraudflow.behaviour.definitions import NAMES as BEHAVIOUR
from fraudflow.data.columns import N_FEATURES, TIME_INDEX
from fraudflow.data.dataset import Dataset, DatasetError, History

_ROWS = """
    SELECT p.event_id, p."timestamp", p.features, p.behaviour, p.user_id, p.device_id, p.ip_address, p.country,
           p.city, p.latitude, p.longitude, l.label
    FROM fraud_predictions p
    LEFT JOIN LATERAL (
        SELECT label FROM labels WHERE event_id = p.event_id AND known_at <= $3
        ORDER BY known_at DESC, id DESC LIMIT 1
    ) l ON true
    WHERE p."timestamp" >= $1 AND p."timestamp" < $2 AND p.features IS NOT NULL
    ORDER BY p."timestamp", p.event_id"""


def _nan(value: Any) -> float:
    return np.nan if value is None else float(value)


async def load_served(
    conn: asyncpg.Connection, since: datetime, until: datetime, cutoff: datetime, label_delay: timedelta
) -> tuple[Dataset, dict[str, Any]]:
    """The transactions of [since, until) old enough at `cutoff` for their chargebacks, and what the card
    says of them."""
    horizon = min(until, cutoff - label_delay)
    if horizon <= since:
        raise DatasetError(
            f"no transaction of the window is old enough: with a label delay of {label_delay.days} days and a "
            f"cutoff at {cutoff:%Y-%m-%d %H:%M}, only those before {cutoff - label_delay:%Y-%m-%d %H:%M} have "
            "had time for their chargebacks"
        )
    rows = await conn.fetch(_ROWS, since, horizon, cutoff)
    if not rows:
        raise DatasetError(f"no stored transaction between {since:%Y-%m-%d %H:%M} and {horizon:%Y-%m-%d %H:%M}")
    too_recent = 0
    if until > horizon:
        too_recent = int(
            await conn.fetchval(
                'SELECT count(*) FROM fraud_predictions WHERE "timestamp" >= $1 AND "timestamp" < $2', horizon, until
            )
        )
    timestamps = np.array([r["timestamp"].timestamp() for r in rows], dtype=np.float64)
    features = np.array([r["features"] for r in rows], dtype=np.float32)
    if features.shape[1:] != (N_FEATURES,):
        raise DatasetError(f"stored feature vectors are not {N_FEATURES} wide")
    # Time means seconds since the set's first transaction, as in the ULB file (the models do not read it).
    features[:, TIME_INDEX] = timestamps - timestamps[0]
    served = np.full((len(rows), len(BEHAVIOUR)), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        if row["behaviour"] is not None:
            values = orjson.loads(row["behaviour"])
            served[i] = [_nan(values.get(name)) for name in BEHAVIOUR]
    labels = np.array([r["label"] == "fraud" for r in rows], dtype=np.int8)
    history = History(
        event_id=[str(r["event_id"]) for r in rows],
        timestamp=timestamps,
        user_id=[r["user_id"] for r in rows],
        device_id=[r["device_id"] for r in rows],
        ip_address=[r["ip_address"] for r in rows],
        country=[r["country"] for r in rows],
        city=[r["city"] for r in rows],
        latitude=np.array([_nan(r["latitude"]) for r in rows]),
        longitude=np.array([_nan(r["longitude"]) for r in rows]),
    )
    source = (
        f"fraud_predictions {since:%Y-%m-%d %H:%M} to {horizon:%Y-%m-%d %H:%M} UTC, labels at {cutoff:%Y-%m-%d %H:%M}"
    )
    about = {
        "from": "fraud_predictions, with the behaviour features served",
        "since": since.isoformat(),
        "until": horizon.isoformat(),
        "cutoff": cutoff.isoformat(),
        "label_delay_days": label_delay.total_seconds() / 86_400,
        "transactions": len(rows),
        "labelled_fraud": int(labels.sum()),
        "labelled_legitimate": sum(r["label"] == "legitimate" for r in rows),
        "unlabelled_taken_as_legitimate": sum(r["label"] is None for r in rows),
        "left_out_too_recent": too_recent,
    }
    return Dataset(features, labels, source, history, served), about
