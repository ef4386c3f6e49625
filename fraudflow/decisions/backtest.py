"""A candidate rule over stored transactions, with the features they were scored with (`behaviour`):
how many it matches, by day, and which decisions it would have changed.

The columns read are those the condition needs, extracted by PostgreSQL (a behaviour feature as a float8),
so a million rows cost one pass over what matters.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from fraudflow.decisions.conditions import compile_condition
from fraudflow.decisions.fields import FEATURES, FIELDS
from fraudflow.decisions.lists import EntityKind
from fraudflow.decisions.policy import OUTCOME, Policy, RuleAction
from fraudflow.decisions.store import PolicyError, known_lists, load_lists

EXAMPLES = 20
# The model's own decision: its reason on rows of schema 3 events, the decision itself before.
_MODEL_DECISION = (
    "coalesce((SELECT r->>'decision' FROM jsonb_array_elements(reasons) r WHERE r->>'source' = 'model' LIMIT 1), "
    "decision)"
)
_COLUMNS = {
    "amount": "amount::float8",
    "fraud_proba": "fraud_proba::float8",
    "anomaly_score": "anomaly_score::float8",
    "expected_loss": "(fraud_proba * amount)::float8",
    "model_decision": _MODEL_DECISION,
    "ip_address": "ip_address::text",
    **{f.name: f"(behaviour->>'{f.name}')::float8" for f in FEATURES},
}
_IDENTITIES = {
    EntityKind.USER: "user_id",
    EntityKind.DEVICE: "device_id",
    EntityKind.IP: "ip_address",
    EntityKind.COUNTRY: "country",
}
# An existing decision a candidate cannot change: a list's, or a rule's of an action that comes first.
_RANK = {action: rank for rank, action in enumerate(RuleAction)}


def _select(fields: set[str]) -> str:
    return ", ".join(f"{_COLUMNS.get(name, name)} AS {name}" for name in sorted(fields))


async def stored_facts(conn: asyncpg.Connection, event_id: str) -> dict[str, Any]:
    """A stored transaction's fields, as the API gave them to the rules (lists as they are now)."""
    try:
        key = uuid.UUID(event_id)
    except ValueError:
        raise PolicyError(f"{event_id!r} is not an event id") from None
    names = {name for name in FIELDS if name != "lists"}
    row = await conn.fetchrow(f"SELECT {_select(names)} FROM fraud_predictions WHERE event_id = $1", key)
    if row is None:
        raise PolicyError(f"no stored transaction with event id {event_id}")
    values = dict(row)
    policy = Policy(await load_lists(conn))
    identities = {kind: values[column] for kind, column in _IDENTITIES.items()}
    values["lists"] = [index.info.name for index, _, _ in policy.lists_of(identities, datetime.now().timestamp())]
    return values


async def backtest(
    conn: asyncpg.Connection, when: str, action: str, since: datetime, until: datetime
) -> dict[str, Any]:
    try:
        verb = RuleAction(action)
    except ValueError:
        raise PolicyError(f"action {action!r}: one of decline, review, allow") from None
    condition = compile_condition(when, await known_lists(conn))
    needs_lists = "lists" in condition.fields
    policy = Policy(await load_lists(conn)) if needs_lists else Policy()
    fields = set(condition.fields) - {"lists"}
    if needs_lists:
        fields |= set(_IDENTITIES.values())
    query = (
        f"SELECT p.event_id, received_at::date AS day, decision, decided_by, reasons->0->>'action' AS deciding_action,"
        f" l.label AS label{', ' + _select(fields) if fields else ''} "
        # Only the label joins in: a column of the view named like one of the rows' (source) would be ambiguous.
        "FROM fraud_predictions p LEFT JOIN (SELECT event_id AS labelled, label FROM latest_labels) l "
        "ON l.labelled = p.event_id "
        "WHERE received_at >= $1 AND received_at < $2"
    )
    days: dict[str, list[int]] = {}
    changed: dict[str, int] = {}
    examples: list[str] = []
    totals = {"transactions": 0, "matched": 0, "unevaluated": 0, "failed": 0}
    labelled = {"labelled": 0, "frauds": 0, "matched_frauds": 0, "matched_legitimate": 0}
    outcome, now = OUTCOME[verb], datetime.now().timestamp()
    reads = [f for f in condition.fields if f != "lists"]
    async with conn.transaction():
        async for row in conn.cursor(query, since, until, prefetch=10_000):
            totals["transactions"] += 1
            day = days.setdefault(row["day"].isoformat(), [0, 0])
            day[0] += 1
            label = row["label"]
            if label is not None:
                labelled["labelled"] += 1
                labelled["frauds"] += label == "fraud"
            values = {f: row[f] for f in reads}
            if needs_lists:
                identities = {kind: row[column] for kind, column in _IDENTITIES.items()}
                values["lists"] = [index.info.name for index, _, _ in policy.lists_of(identities, now)]
            try:
                matched = condition.matches(values)
            except Exception:  # as on the hot path: a failure skips the row
                totals["failed"] += 1
                continue
            if matched is None:  # a field it reads is unknown for this row
                totals["unevaluated"] += 1
                continue
            if not matched:
                continue
            totals["matched"] += 1
            day[1] += 1
            if label is not None:
                labelled["matched_frauds" if label == "fraud" else "matched_legitimate"] += 1
            decided_by, current = row["decided_by"], row["decision"]
            if decided_by in ("allow_list", "deny_list"):
                continue
            if decided_by == "rule" and _RANK.get(RuleAction(row["deciding_action"]), 99) <= _RANK[verb]:
                continue
            if current != outcome:
                key = f"{current} -> {outcome}"
                changed[key] = changed.get(key, 0) + 1
                if len(examples) < EXAMPLES:
                    examples.append(str(row["event_id"]))
    return {
        "condition": condition.text,
        "action": verb.value,
        "since": since.isoformat(),
        "until": until.isoformat(),
        **totals,
        "by_day": [{"day": d, "transactions": t, "matched": m} for d, (t, m) in sorted(days.items())],
        "would_change": changed,
        "examples": examples,
        "labels": _precision_recall(labelled),
    }


def _precision_recall(counts: dict[str, int]) -> dict[str, Any]:
    """Against the latest labels of the period's transactions (unlabelled ones count for neither)."""
    flagged = counts["matched_frauds"] + counts["matched_legitimate"]
    return {
        **counts,
        "precision": round(counts["matched_frauds"] / flagged, 4) if flagged else None,
        "recall": round(counts["matched_frauds"] / counts["frauds"], 4) if counts["frauds"] else None,
    }
