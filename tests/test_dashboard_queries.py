"""Dashboard queries against the real PostgreSQL with known rows: every KPI and bucket checked exactly."""

from __future__ import annotations

import bisect
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from dash_app import pages, queries
from dash_app.queries import LATENCY_EDGES, Filters, latency_quantile

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
# (minutes before NOW, country, source, device, decision, proba, latency seconds)
ROWS = [
    (1, "FR", "web", "mobile", "decline", 0.95, 0.2),
    (2, "FR", "web", "desktop", "decline", 0.90, 0.4),
    (3, "DE", "app", "mobile", "decline", 0.85, 0.6),
    (4, "DE", "app", "mobile", "review", 0.40, 0.8),
    (5, None, "app", None, "review", 0.30, 1.0),
    (6, "FR", "web", "mobile", "approve", 0.05, 1.2),
    (7, "FR", "web", "mobile", "approve", 0.04, 1.4),
    (8, "US", "web", "desktop", "approve", 0.03, 1.6),
    (9, "US", "app", "mobile", "approve", 0.02, 1.8),
    (0.5, "FR", "web", "mobile", "approve", 0.01, 2.0),
    (120, "FR", "web", "mobile", "decline", 0.99, 0.1),  # outside a 15-minute window
    (599.5, "DE", "app", "mobile", "review", 0.45, 0.3),  # before CUT's start, in the same quarter hour
    (595, "US", "web", "desktop", "decline", 0.97, 0.5),  # inside CUT, in its first partial quarter hour
]


@pytest.fixture
async def loaded(db: asyncpg.Connection) -> list[uuid.UUID]:
    ids = []
    for minutes, country, source, device, decision, proba, latency in ROWS:
        received = NOW - timedelta(minutes=minutes)
        event_id = uuid.uuid4()
        ids.append(event_id)
        await db.execute(
            """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
                   anomaly_score, device_type, country, city, latitude, longitude, event_id, decision, model_version,
                   amount, received_at, processed_at)
               VALUES ($1, 'u', $2, $3, $4, $5, $6, $7, 'Paris', 48.86, 2.35, $8, $9, 'v1', 10, $1, $10)""",
            received,
            source,
            int(decision == "decline"),
            proba,
            proba / 2,
            device,
            country,
            event_id,
            decision,
            received + timedelta(seconds=latency),
        )
    await db.execute("SELECT fraudflow_add_to_rollups('fraud_predictions')")  # what the consumer does per flush
    return ids


WINDOW = Filters(start=NOW - timedelta(minutes=15), end=NOW)


async def test_kpis(db: asyncpg.Connection, loaded: list[uuid.UUID]) -> None:
    k = await queries.kpis(db, WINDOW)
    inside = ROWS[:10]
    assert k["transactions"] == 10
    assert k["frauds"] == 3
    assert k["reviews"] == 2
    assert k["declines"] == 3
    assert k["flagged"] == 5  # what the flagged table lists: reviews and declines
    assert k["flag_rate"] == pytest.approx(0.5)
    assert k["mean_proba"] == pytest.approx(np.mean([np.float32(r[5]) for r in inside]), abs=1e-6)
    latencies = [r[6] for r in inside]
    assert k["latency_p50_s"] == pytest.approx(np.percentile(latencies, 50))
    assert k["latency_p95_s"] == pytest.approx(np.percentile(latencies, 95))
    assert k["events_per_s"] == pytest.approx(10 / 900)  # over the whole 15 minutes
    assert k["model_versions"] == ["v1"]


async def test_filters_apply(db: asyncpg.Connection, loaded: list[uuid.UUID]) -> None:
    fr = Filters(WINDOW.start, WINDOW.end, countries=("FR",))
    assert (await queries.kpis(db, fr))["transactions"] == 5
    assert (await queries.kpis(db, Filters(WINDOW.start, WINDOW.end, decisions=("review",))))["transactions"] == 2
    assert (await queries.kpis(db, Filters(WINDOW.start, WINDOW.end, min_proba=0.5)))["transactions"] == 3
    both = Filters(WINDOW.start, WINDOW.end, sources=("app",), device_types=("mobile",))
    assert (await queries.kpis(db, both))["transactions"] == 3


async def test_volume_buckets(db: asyncpg.Connection, loaded: list[uuid.UUID]) -> None:
    buckets = await queries.volume(db, WINDOW)
    assert queries.bucket_for(WINDOW.end - WINDOW.start) == timedelta(seconds=10)
    assert sum(b["transactions"] for b in buckets) == 10
    assert sum(b["frauds"] for b in buckets) == 3
    assert all(b["bucket"].second % 10 == 0 for b in buckets)
    day = Filters(NOW - timedelta(hours=24), NOW)
    assert queries.bucket_for(day.end - day.start) == timedelta(minutes=15)
    assert sum(b["transactions"] for b in await queries.volume(db, day)) == 13


async def test_breakdowns_and_places(db: asyncpg.Connection, loaded: list[uuid.UUID]) -> None:
    countries = {r["value"]: (r["transactions"], r["frauds"]) for r in await queries.breakdown(db, WINDOW, "country")}
    assert countries == {"FR": (5, 2), "DE": (2, 1), "US": (2, 0), "(unknown)": (1, 0)}
    with pytest.raises(KeyError):
        await queries.breakdown(db, WINDOW, "user_id; DROP TABLE fraud_predictions")
    (place,) = await queries.places(db, WINDOW)
    assert (place["latitude"], place["longitude"], place["transactions"]) == (48.9, 2.4, 10)


async def test_distributions(db: asyncpg.Connection, loaded: list[uuid.UUID]) -> None:
    rows = await queries.distributions(db, WINDOW)
    for metric in ("fraud_proba", "anomaly_score"):
        assert sum(r["n"] for r in rows if r["metric"] == metric) == 10
    declines = {r["bin"] for r in rows if r["decision"] == "decline" and r["metric"] == "fraud_proba"}
    assert declines == {18, 19}  # 0.85 -> bin 18; 0.90 and 0.95 -> bin 19
    anomalies = {r["bin"] for r in rows if r["decision"] == "decline" and r["metric"] == "anomaly_score"}
    assert anomalies == {9, 10}  # half the probability: 0.425 -> bin 9; 0.45 and 0.475 -> bin 10


async def test_flagged_pages_and_sorts(db: asyncpg.Connection, loaded: list[uuid.UUID]) -> None:
    total, first = await queries.flagged(db, WINDOW, page=0, page_size=2, sort="fraud_proba")
    assert total == 5
    assert [round(r["fraud_proba"], 2) for r in first] == [0.95, 0.90]
    _, last = await queries.flagged(db, WINDOW, page=2, page_size=2, sort="fraud_proba")
    assert [round(r["fraud_proba"], 2) for r in last] == [0.30]
    _, ascending = await queries.flagged(db, WINDOW, page=0, page_size=5, sort="fraud_proba", descending=False)
    assert round(ascending[0]["fraud_proba"], 2) == 0.30
    capped, _ = await queries.flagged(db, WINDOW, page=0, page_size=2, count_limit=3)
    assert capped == 3
    with pytest.raises(KeyError):
        await queries.flagged(db, WINDOW, page=0, page_size=5, sort="1; --")


async def test_event_and_empty_database(db: asyncpg.Connection, loaded: list[uuid.UUID]) -> None:
    detail = await queries.event(db, loaded[0])
    assert detail is not None
    assert detail["decision"] == "decline"
    assert await queries.event(db, uuid.uuid4()) is None
    await db.execute("TRUNCATE fraud_predictions")
    empty = await queries.kpis(db, WINDOW)
    assert (empty["transactions"], empty["flag_rate"], empty["model_versions"]) == (0, 0.0, [])
    assert await queries.volume(db, WINDOW) == []
    assert await queries.leases(db) == []


DAY = Filters(start=NOW - timedelta(hours=24), end=NOW)
# A long range (so the aggregates answer) that starts and ends inside quarter hours: 02:01 to 11:56:30.
CUT = Filters(start=NOW - timedelta(minutes=599), end=NOW - timedelta(minutes=3.5))


def from_rows(f: Filters) -> Filters:
    """The same rows, but a filtered view (every decision selected), so it reads the rows themselves."""
    return Filters(f.start, f.end, decisions=("approve", "review", "decline"))


DAY_FROM_ROWS = from_rows(DAY)


def test_long_unfiltered_ranges_read_the_aggregates() -> None:
    assert WINDOW.aggregate_window() is None  # 10-second buckets
    assert DAY_FROM_ROWS.aggregate_window() is None
    assert Filters(DAY.start, DAY.end, min_proba=0.2).aggregate_window() is None
    assert DAY.aggregate_window() == (DAY.start, DAY.end)
    assert CUT.aggregate_window() == (CUT.start, CUT.end)  # partial quarter hours are read from the rows


@pytest.mark.parametrize("window", [DAY, CUT], ids=["aligned", "partial-quarters"])
async def test_aggregates_answer_like_the_rows(
    db: asyncpg.Connection, loaded: list[uuid.UUID], window: Filters
) -> None:
    latencies = [
        latency for minutes, *_, latency in ROWS if window.start <= NOW - timedelta(minutes=minutes) < window.end
    ]
    exact_count = await db.fetchval(
        "SELECT count(*) FROM fraud_predictions WHERE received_at >= $1 AND received_at < $2", window.start, window.end
    )
    assert exact_count == len(latencies)
    rows = from_rows(window)
    fast, exact = await queries.kpis(db, window), await queries.kpis(db, rows)
    assert fast["transactions"] == exact_count
    for key in (
        "transactions",
        "frauds",
        "reviews",
        "declines",
        "model_versions",
        "events_per_s",
        "flagged",
        "flag_rate",
    ):
        assert fast[key] == exact[key], key
    assert fast["mean_proba"] == pytest.approx(exact["mean_proba"])
    for key, q in (("latency_p50_s", 50), ("latency_p95_s", 95)):
        # Estimated from the histogram: within the bins of the two observations the exact value lies between.
        below, above = np.percentile(latencies, q, method="lower"), np.percentile(latencies, q, method="higher")
        assert exact[key] == pytest.approx(np.percentile(latencies, q))
        assert _bin_edges(below)[0] <= fast[key] <= _bin_edges(above)[1]

    def counts(buckets: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(b["bucket"], b["transactions"], b["frauds"], b["reviews"]) for b in buckets]

    assert counts(await queries.volume(db, window)) == counts(await queries.volume(db, rows))
    (fast_model,) = await queries.by_model(db, window)
    (exact_model,) = await queries.by_model(db, rows)
    assert fast_model["transactions"] == exact_count
    for key in ("model_version", "transactions", "reviews", "declines"):
        assert fast_model[key] == exact_model[key], key
    assert fast_model["mean_proba"] == pytest.approx(exact_model["mean_proba"])
    assert sorted(map(_key, await queries.distributions(db, window))) == sorted(
        map(_key, await queries.distributions(db, rows))
    )
    for dimension in queries.BREAKDOWNS:
        fast_rows = await queries.breakdown(db, window, dimension)
        exact_rows = await queries.breakdown(db, rows, dimension)
        assert [(r["value"], r["transactions"], r["frauds"]) for r in fast_rows] == [
            (r["value"], r["transactions"], r["frauds"]) for r in exact_rows
        ]
        assert [r["mean_proba"] for r in fast_rows] == pytest.approx([r["mean_proba"] for r in exact_rows])
    (fast_place,) = await queries.places(db, window)
    (exact_place,) = await queries.places(db, rows)
    assert (fast_place["latitude"], fast_place["longitude"], fast_place["transactions"]) == (48.9, 2.4, exact_count)
    assert fast_place["city"] == exact_place["city"] != "(unknown)"
    assert fast_place["mean_proba"] == pytest.approx(exact_place["mean_proba"])
    assert await queries.options(db, window) == await queries.options(db, rows)


def _bin_edges(seconds: float) -> tuple[float, float]:
    index = bisect.bisect_right(LATENCY_EDGES, seconds)
    return (0.0 if index == 0 else LATENCY_EDGES[index - 1]), LATENCY_EDGES[min(index, len(LATENCY_EDGES) - 1)]


def _key(row: dict[str, object]) -> tuple[object, ...]:
    return (row["decision"], row["metric"], row["bin"], row["n"])


async def test_latency_edges_match_the_database(db: asyncpg.Connection) -> None:
    assert await db.fetchval("SELECT fraudflow_latency_edges()") == list(LATENCY_EDGES)


def test_latency_quantile_interpolates_within_a_bin() -> None:
    # 10 values in [0.2, 0.3) (bin 6) and 10 in [1, 1.5) (bin 10)
    counts = {6: 10, 10: 10}
    assert latency_quantile(counts, 0.25) == pytest.approx(0.25)
    assert latency_quantile(counts, 0.75) == pytest.approx(1.25)
    assert latency_quantile({0: 4}, 0.5) == pytest.approx(0.005)
    assert latency_quantile({len(LATENCY_EDGES): 1}, 0.5) == LATENCY_EDGES[-1]  # 300 s and more
    assert latency_quantile({}, 0.5) is None


async def test_entity_history_and_who_shares_an_ip(db: asyncpg.Connection) -> None:
    for minutes, user, ip in (
        (1, "a", "198.51.100.1"),
        (2, "b", "198.51.100.1"),
        (3, "b", "198.51.100.1"),
        (4, "c", "198.51.100.2"),
        (5, "a", None),
    ):
        received = NOW - timedelta(minutes=minutes)
        await db.execute(
            """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
                   anomaly_score, event_id, decision, model_version, received_at, ip_address)
               VALUES ($1, $2, 'web', 0, 0.1, 0.1, $3, 'approve', 'v1', $1, $4)""",
            received,
            user,
            uuid.uuid4(),
            ip,
        )
    history = await queries.history(db, "user", "a")
    assert [r["ip_address"] for r in history] == ["198.51.100.1", None]  # newest first
    assert [(r["user_id"], r["transactions"]) for r in await queries.shared_with(db, "user", "a")] == [("b", 2)]
    users_of_ip = await queries.shared_with(db, "ip", "198.51.100.1")
    assert [(r["user_id"], r["transactions"]) for r in users_of_ip] == [("b", 2), ("a", 1)]
    with pytest.raises(KeyError):
        await queries.history(db, "device_type; DROP TABLE x", "a")


async def test_a_device_page_lists_its_users(db: asyncpg.Connection) -> None:
    for user in ("a", "b", "b"):
        await db.execute(
            """INSERT INTO fraud_predictions ("timestamp", user_id, source, fraud_prediction, fraud_proba,
                   anomaly_score, event_id, decision, model_version, received_at, device_id)
               VALUES (now(), $1, 'web', 0, 0.1, 0.1, $2, 'approve', 'v1', now(), 'phone-9')""",
            user,
            uuid.uuid4(),
        )
    assert len(await queries.history(db, "device", "phone-9")) == 3
    users = await queries.shared_with(db, "device", "phone-9")
    assert [(r["user_id"], r["via"], r["transactions"]) for r in users] == [("b", "phone-9", 2), ("a", "phone-9", 1)]


def test_search_goes_to_the_page_of_what_was_typed() -> None:
    event_id = "6f1c1f2e-7f1d-4a55-9d38-0d8d1f6c1a11"
    assert pages.target(f" {event_id} ") == f"/tx/{event_id}"
    assert pages.target("198.51.100.7") == "/ip/198.51.100.7"
    assert pages.target("2001:db8::1") == "/ip/2001%3Adb8%3A%3A1"
    assert pages.target("user/42 x") == "/user/user%2F42%20x"
    assert pages.target("device: phone 1") == "/device/phone%201"
    assert pages.target("  ") is None
    assert pages.route("/user/user%2F42%20x") == ("user", "user/42 x")
    assert pages.route("/") is None
    assert pages.route("/elsewhere/1") is None
