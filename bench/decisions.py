"""Decisions (issue 15): what rules, lists and explanations cost, and how fast a backtest runs.

(1) The scoring API with 50 enabled rules and lists of 1,000,000 entries (a deny list of devices, and a list
    of 1,000,000 IP addresses plus 1,000 CIDR ranges that rules read) against the same API with no rules and
    no lists, same run: same embedded PostgreSQL and redis-server, 1 uvicorn worker each, wrk at the maximum
    rate. Goal: >= 0.85x the throughput.
(2) Explanation cost per flagged transaction: LightGBM's TreeSHAP for the shipped classifier, against
    scoring the same rows with both ONNX models (batch of 1 and of 16).
(3) Backtest: a candidate rule over 1,000,000 stored rows with their behaviour features, against reading
    the same columns without evaluating anything (the floor), same run. Goal: under 10 s.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson

from bench.api import measure, parse_with_wrk, server, stream_env, wrk_arguments, wrk_table
from bench.dashboard import COLUMNS, rows
from bench.report import publish
from fraudflow.db.migrate import migrate
from fraudflow.decisions import store
from fraudflow.decisions.backtest import backtest
from fraudflow.local.kinesis import MotoKinesis
from fraudflow.local.postgres import EmbeddedPostgres
from fraudflow.local.redis import EmbeddedRedis
from fraudflow.manifest import MODEL_INPUTS
from fraudflow.scoring import Decision, Scorer

LIST_SIZE = 1_000_000
RULES = 50
CANDIDATE = "user_count_1h >= 5.0 && amount < 2.0 && user_new_device == 1.0"


def rule_texts() -> list[tuple[str, str]]:
    """50 rules over amounts, scores, behaviour and lists, as a fraud team writes them; none matches the
    benchmark's payments, so every one is evaluated on every transaction."""
    shapes = [
        ("review", "user_count_1h >= {n}.0 && amount < 2.0"),
        ("decline", "user_new_device == 1.0 && user_new_country == 1.0 && amount > {k}000.0"),
        ("review", "user_speed_kmh > {k}00.0 && user_km_from_previous > 500.0"),
        ("review", "device_users_24h >= {n}.0 && expected_loss > 10.0"),
        ("review", '"watched_ips" in lists && amount > {k}00.0'),
        ("decline", 'country == "XX" && fraud_proba > 0.{n}'),
        ("allow", 'user_id == "trusted-{n}" && amount < 10.0'),
        ("review", "ip_users_24h >= {n}.0 && hour_of_day < 5.0 && amount > 500.0"),
        ("review", "anomaly_score > 0.99 && user_amount_zscore > {n}.0 && amount > 900.0"),
        ("decline", 'source == "blocked-{n}"'),
    ]
    return [(action, text.format(n=10 + i, k=i + 5)) for i in range(RULES) for action, text in [shapes[i % 10]]]


async def load_policy(url: str, with_rules: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        if not with_rules:
            return
        await store.create_list(conn, "stolen_devices", "device", "deny", "chargebacks", "bench")
        await store.add_entries(conn, "stolen_devices", ((f"dev-{i}", None, None) for i in range(LIST_SIZE)), "bench")
        await store.create_list(conn, "watched_ips", "ip", "none", "proxies", "bench")
        addresses = (f"172.{16 + (i >> 16 & 15)}.{i >> 8 & 255}.{i & 255}" for i in range(LIST_SIZE))
        ranges = (f"198.{18 + (i >> 8 & 1)}.{i & 255}.0/24" for i in range(1000))
        await store.add_entries(conn, "watched_ips", ((v, None, None) for v in (*addresses, *ranges)), "bench")
        for i, (action, text) in enumerate(rule_texts()):
            await store.add_rule(conn, f"rule_{i:02d}", text, action, "", "bench")
    finally:
        await conn.close()


def api_with_and_without(work: Path, seconds: int, connections: int) -> dict[str, Any]:
    kinesis = MotoKinesis(log_dir=work)
    redis = EmbeddedRedis(work / "redis")
    postgres = EmbeddedPostgres(work / "pg", durable=False)
    kinesis.start()
    redis.start()
    postgres.start()
    results: dict[str, Any] = {}
    try:
        env = {**stream_env(kinesis), "FRAUDFLOW_REDIS_URL": redis.url}
        for name, with_rules in (("without_rules", False), ("with_rules", True)):
            url = postgres.url(name)
            asyncio.run(_create(postgres.url(), name))
            started = time.perf_counter()
            asyncio.run(load_policy(url, with_rules))
            loaded_s = time.perf_counter() - started
            with server("api.main:app", {**env, "DATABASE_URL": url}, work / f"{name}.log") as (api, process):
                _wait_for_policy(api, RULES if with_rules else 0)
                results[name] = measure(api, process, seconds, connections)
                results[name]["api_rss_mb"] = round(process.memory_info().rss / 1e6)
                results[name]["policy_written_s"] = round(loaded_s, 1)
    finally:
        postgres.stop()
        redis.stop()
        kinesis.stop()
    return results


async def _create(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()


def _wait_for_policy(api: str, rules: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        policy = httpx.get(api + "/readyz", timeout=5).json().get("policy", {})
        if policy.get("current") and policy.get("rules") == rules:
            return
        time.sleep(0.2)
    raise RuntimeError("the API did not load its rules in time")


def explanation_cost() -> dict[str, Any]:
    scorer = Scorer()
    explainer = scorer.models.explainer
    assert explainer is not None
    rng = np.random.default_rng(3)
    matrix = np.abs(rng.normal(size=(2000, len(MODEL_INPUTS)))).astype(np.float32)
    matrix[:, MODEL_INPUTS.index("user_count_1h")] = rng.integers(5, 30, 2000)
    flagged = matrix[scorer.score_batch(matrix).decision >= Decision.REVIEW]
    inputs = scorer.models.classifier.inputs(flagged)
    out: dict[str, Any] = {"flagged_rows": len(flagged)}
    for batch in (1, 16):
        chunks = [slice(i, i + batch) for i in range(0, len(flagged) - batch + 1, batch)][: 2000 // batch]
        started = time.perf_counter()
        for chunk in chunks:
            scorer.score_batch(flagged[chunk])  # explains what it flags: both costs
        both = (time.perf_counter() - started) / (len(chunks) * batch)
        started = time.perf_counter()
        for chunk in chunks:
            explainer.explain(inputs[chunk])
        explain = (time.perf_counter() - started) / (len(chunks) * batch)
        out[f"batch_{batch}"] = {
            "explain_us_per_flagged": round(explain * 1e6),
            "score_and_explain_us_per_flagged": round(both * 1e6),
            "scoring_alone_us_per_row": round((both - explain) * 1e6),
        }
    return out


async def _backtest(url: str, total: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        now = datetime.now(UTC)
        rng = random.Random(1)
        behaviour_at = COLUMNS.index("behaviour")
        for first in range(0, total, 100_000):
            batch = []
            for row in rows(first, min(100_000, total - first), total, now, rng):
                values = list(row)
                behaviour = {"user_count_1h": float(rng.randrange(12)), "user_new_device": float(rng.random() < 0.1)}
                values[behaviour_at] = orjson.dumps(behaviour).decode()
                batch.append(tuple(values))
            await conn.copy_records_to_table("fraud_predictions", records=batch, columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE fraud_predictions")
        since, until = now - timedelta(days=8), now + timedelta(minutes=1)
        started = time.perf_counter()
        floor = 0
        async with conn.transaction():
            query = (
                "SELECT event_id, received_at::date AS day, decision, decided_by, reasons->0->>'action', "
                "amount::float8, (behaviour->>'user_count_1h')::float8, (behaviour->>'user_new_device')::float8 "
                "FROM fraud_predictions WHERE received_at >= $1 AND received_at < $2"
            )
            async for _ in conn.cursor(query, since, until, prefetch=10_000):
                floor += 1
        floor_s = time.perf_counter() - started
        started = time.perf_counter()
        result = await backtest(conn, CANDIDATE, "review", since, until)
        backtest_s = time.perf_counter() - started
    finally:
        await conn.close()
    return {
        "rows": result["transactions"],
        "matched": result["matched"],
        "backtest_s": round(backtest_s, 2),
        "read_only_s": round(floor_s, 2),
        "backtest_over_read": round(backtest_s / floor_s, 2),
    }


def backtest_speed(work: Path, total: int) -> dict[str, Any]:
    postgres = EmbeddedPostgres(work / "pg-backtest", durable=False)
    postgres.start()
    try:
        return asyncio.run(_backtest(postgres.url(), total))
    finally:
        postgres.stop()


def main() -> None:
    parser = wrk_arguments(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="stored rows for the backtest")
    args = parse_with_wrk(parser)
    work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-"))
    try:
        results: dict[str, Any] = {
            "api": api_with_and_without(work, args.seconds, args.connections),
            "explanations": explanation_cost(),
            "backtest": backtest_speed(work, args.rows),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    api = results["api"]
    ratios = {
        "throughput_with_over_without": round(api["with_rules"]["rps"] / api["without_rules"]["rps"], 2),
        "api_cpu_without_over_with": round(
            api["without_rules"]["server_cpu_us_per_request"] / api["with_rules"]["server_cpu_us_per_request"], 2
        ),
    }
    goals = {
        "throughput >= 0.85x with 50 rules and lists of 1M": ratios["throughput_with_over_without"] >= 0.85,
        "backtest of 1M rows under 10 s": results["backtest"]["backtest_s"] < 10,
    }
    summary = wrk_table({name: api[name] for name in ("without_rules", "with_rules")}, (("RSS MB", "api_rss_mb"),))
    summary.append(f"ratios: {ratios}")
    summary.append(f"explanations: {results['explanations']}")
    summary.append(f"backtest: {results['backtest']}")
    summary += [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish(
        "decisions",
        {
            "results": results,
            "ratios": ratios,
            "goals": goals,
            "setup": {"uvicorn_workers": 1, "load": f"wrk -t1 -c{args.connections}", "rules": RULES},
        },
        summary,
    )


if __name__ == "__main__":
    main()
