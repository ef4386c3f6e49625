"""Behaviour features (issue 14): their cost in the API, the online store's memory, the offline replay's speed.

(1) The scoring API with the online feature store (an embedded redis-server) against the same API without
    one, same run, 1 uvicorn worker each: the maximum rate (wrk), and p50/p99 at 1,000 req/s. The two are
    measured alternately, three times each, and the best run of each is compared (these machines are noisy:
    single runs of the same API differ by a third). Goal: >= 0.85x the throughput, <= 1 ms added at p50.
    Also the store calls at 1,000 req/s (the API's own histogram: how many, their median), and the floor
    of a round trip's CPU in the API: redis-py's asyncio client against a bare stream with hiredis.
(2) Store memory per million active users: users with a week of typical activity (5 payments, one device, one
    IP), written through the real Lua script; Redis's own used_memory, extrapolated to 1,000,000 users.
(3) Offline replay: transactions per second computing the features over a history in event-time order,
    against the fits of `fraudflow train` (LightGBM classifier, isolation forest, logistic-regression
    baseline; the shipped configuration) on a matrix of the same size, same run.
    Goal: replaying a training-size history takes no longer than the training.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import hiredis
import httpx
import numpy as np
from redis.asyncio import Redis

from bench.api import measure, paced, parse_with_wrk, server, stream_env, wrk_arguments, wrk_table
from bench.report import publish
from fraudflow.behaviour.definitions import DAY, Activity
from fraudflow.behaviour.offline import replay
from fraudflow.behaviour.online import OnlineStore
from fraudflow.local.kinesis import MotoKinesis
from fraudflow.local.redis import EmbeddedRedis
from fraudflow.training.pipeline import TrainingConfig, fit_baseline, fit_classifier, fit_detector

RATE = 1000.0
ROUNDS = 3


def degraded(url: str) -> dict[str, float]:
    """Transactions the API scored without behaviour features, by reason, from its metrics."""
    text = httpx.get(url + "/metrics", timeout=5).text
    found = re.findall(r'^fraudflow_features_degraded_total\{reason="([^"]+)"\} (\S+)$', text, re.MULTILINE)
    return {reason: float(count) for reason, count in found}


def store_calls(url: str) -> dict[float, float]:
    """The API's histogram of its feature-store calls: calls taking at most each bound (s), cumulative."""
    text = httpx.get(url + "/metrics", timeout=5).text
    found = re.findall(r'^fraudflow_features_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.MULTILINE)
    return {float(bound): float(count) for bound, count in found}


def median_call_ms(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """The median store call between two readings, interpolated within its bucket (as Prometheus does)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    calls = counts[-1]
    if not calls:
        return {"store_calls": 0.0}
    rank, lower, below = calls / 2, 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            share = (rank - below) / max(count - below, 1.0)
            return {"store_calls": calls, "store_call_p50_ms": round((lower + (bound - lower) * share) * 1000, 3)}
        lower, below = bound, count
    return {"store_calls": calls}


def history(transactions: int, users: int, seed: int = 0) -> list[Activity]:
    """A week of payments by `users` users, each with a usual device, IP and place."""
    rng = random.Random(seed)
    homes = [(f"d{u}", f"10.{u % 250}.{u // 250 % 250}.1", rng.choice(["FR", "DE", "US"])) for u in range(users)]
    start = 1_764_000_000.0
    out = []
    for i in range(transactions):
        u = rng.randrange(users)
        device, ip, country = homes[u]
        out.append(
            Activity(
                str(uuid.UUID(int=i)),
                f"user-{u}",
                start + rng.uniform(0, 7 * DAY),
                round(rng.lognormvariate(3, 1), 2),
                device,
                ip,
                country,
                48.8 + rng.uniform(-1, 1),
                2.3 + rng.uniform(-1, 1),
            )
        )
    return sorted(out, key=lambda a: a.time_s)


async def client_floor(url: str, calls: int = 5_000) -> dict[str, Any]:
    """The API-side CPU of one store round trip with nothing in it (PING), through redis-py's asyncio client
    (what the API uses) and through a bare asyncio stream with hiredis's own packer and parser: the floor a
    store call costs the API's event loop, whatever the script does."""
    client = Redis.from_url(url)
    host, port = client.connection_pool.connection_kwargs["host"], client.connection_pool.connection_kwargs["port"]
    reader, writer = await asyncio.open_connection(host, port)
    parser = hiredis.Reader()

    async def bare_ping() -> None:
        writer.write(hiredis.pack_command(("PING",)))
        while (reply := parser.gets()) is False:
            parser.feed(await reader.read(65_536))
        assert reply == b"PONG"

    async def redis_py_ping() -> None:
        await client.ping()

    best: dict[str, float] = {}
    try:
        for _ in range(2):
            for name, ping in (("redis_py_asyncio", redis_py_ping), ("bare_hiredis", bare_ping)):
                started = time.process_time()
                for _ in range(calls):
                    await ping()
                us = (time.process_time() - started) / calls * 1e6
                best[name] = round(min(us, best.get(name, math.inf)), 1)
    finally:
        writer.close()
        await client.aclose()
    return {"cpu_us_per_call": best, "redis_py_over_bare": round(best["redis_py_asyncio"] / best["bare_hiredis"], 2)}


async def store_memory(url: str, users: int) -> dict[str, Any]:
    client = Redis.from_url(url)
    try:
        await client.flushall()
        before = int((await client.info("memory"))["used_memory"])
        store = OnlineStore(client)
        activities = history(users * 5, users, seed=1)
        started = time.perf_counter()
        for i in range(0, len(activities), 500):
            await store.observe(activities[i : i + 500])
        seconds = time.perf_counter() - started
        used = int((await client.info("memory"))["used_memory"]) - before
        keys = int(await client.dbsize())
    finally:
        await client.aclose()
    return {
        "users": users,
        "transactions": len(activities),
        "keys": keys,
        "bytes": used,
        "bytes_per_user": round(used / users, 1),
        "gb_per_million_users": round(used / users * 1e6 / 1e9, 2),
        "store_tx_per_s_in_batches_of_500": round(len(activities) / seconds),
    }


def offline_against_training(transactions: int) -> dict[str, Any]:
    activities = history(transactions, transactions // 10, seed=2)
    started = time.perf_counter()
    state = replay(activities)
    replay_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=(transactions, 29)), state]).astype(np.float32)
    y = (rng.random(transactions) < 0.002).astype(np.int8)
    config = TrainingConfig()
    started = time.perf_counter()  # what `fraudflow train` fits: the classifier, the detector, the baseline
    fit_classifier(x, y, config)
    fit_detector(x[:, :29], config)
    fit_baseline(np.nan_to_num(x), y)
    training_s = time.perf_counter() - started
    return {
        "transactions": transactions,
        "replay_s": round(replay_s, 2),
        "replay_tx_per_s": round(transactions / replay_s),
        "training_s": round(training_s, 2),
        "replay_over_training": round(replay_s / training_s, 2),
    }


def main() -> None:
    parser = wrk_arguments(__doc__)
    parser.add_argument("--users", type=int, default=100_000, help="active users written for the memory figure")
    parser.add_argument("--history", type=int, default=284_807, help="transactions replayed offline")
    args = parse_with_wrk(parser)

    work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-"))
    kinesis = MotoKinesis(log_dir=work)
    redis = EmbeddedRedis(work / "redis")
    kinesis.start()
    redis.start()
    runs: dict[str, list[dict[str, Any]]] = {}
    results: dict[str, Any] = {"runs": runs}
    try:
        env = stream_env(kinesis)
        for round_ in range(ROUNDS):
            for name, extra in (("without_store", {}), ("with_store", {"FRAUDFLOW_REDIS_URL": redis.url})):
                with server("api.main:app", {**env, **extra}, work / f"{name}-{round_}.log") as (url, process):
                    saturated = measure(url, process, args.seconds, args.connections)
                    before = store_calls(url)
                    at_rate = paced(url, process, args.seconds, RATE)
                    at_rate |= median_call_ms(before, store_calls(url))  # the wait the store itself adds
                    runs.setdefault(f"{name}_at_{RATE:.0f}", []).append(at_rate)
                    saturated["scored_without_features"] = degraded(url)
                    runs.setdefault(name, []).append(saturated)
        for name, measured in runs.items():  # the best of each: the fastest, or the quickest at the pace
            results[name] = max(measured, key=lambda r: r["rps"] if "target_rps" not in r else -r["p50_us"])
        results["client_floor"] = asyncio.run(client_floor(redis.url))
        results["store_memory"] = asyncio.run(store_memory(redis.url, args.users))
        results["offline"] = offline_against_training(args.history)
    finally:
        redis.stop()
        kinesis.stop()
        shutil.rmtree(work, ignore_errors=True)

    without, with_ = results["without_store"], results["with_store"]
    slow_name = f"with_store_at_{RATE:.0f}"
    slow, fast = results[slow_name], results[f"without_store_at_{RATE:.0f}"]
    ratios = {
        "throughput_with_over_without": round(with_["rps"] / without["rps"], 2),
        "added_p50_ms_at_1000": round((slow["p50_us"] - fast["p50_us"]) / 1000, 2),
        "added_p99_ms_at_1000": round((slow["p99_us"] - fast["p99_us"]) / 1000, 2),
        "cpu_us_per_request_added": round(with_["server_cpu_us_per_request"] - without["server_cpu_us_per_request"]),
        # The API process alone: the throughput ratio above also pays the redis-server's CPU, which shares
        # this machine's cores with the API, the emulator and wrk (in production the store has its own node).
        "api_cpu_without_over_with": round(
            without["server_cpu_us_per_request"] / with_["server_cpu_us_per_request"], 2
        ),
    }
    goals = {
        "throughput >= 0.85x": ratios["throughput_with_over_without"] >= 0.85,
        "<= 1 ms added at p50 at 1,000 req/s": ratios["added_p50_ms_at_1000"] <= 1.0,
        "offline replay no longer than training": results["offline"]["replay_over_training"] <= 1.0,
        # Timeouts are the budget at work (a call slower than 20 ms under overload): counted, not a failure.
        "no transaction scored without features while the store was up": all(
            not run["scored_without_features"].get("unavailable") for run in runs["with_store"]
        ),
    }
    names = ("without_store", "with_store", f"without_store_at_{RATE:.0f}", f"with_store_at_{RATE:.0f}")
    summary = wrk_table({name: results[name] for name in names})
    summary.append(f"ratios: {ratios}")
    paced_store = [{k: r.get(k) for k in ("store_calls", "store_call_p50_ms")} for r in runs[slow_name]]
    summary.append(
        f"scored without features, with the store: {[r['scored_without_features'] for r in runs['with_store']]}"
    )
    summary.append(f"store calls at {RATE:.0f} req/s: {paced_store}")
    summary.append(f"store round trip, API-side CPU floor: {results['client_floor']}")
    summary.append(f"store memory: {results['store_memory']}")
    summary.append(f"offline replay: {results['offline']}")
    summary += [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish(
        "features",
        {
            "results": results,
            "ratios": ratios,
            "goals": goals,
            "setup": {
                "uvicorn_workers": 1,
                "load": f"wrk -t1 -c{args.connections}",
                "store": "redis-server 6.2",
                "rounds": ROUNDS,
            },
        },
        summary,
    )


if __name__ == "__main__":
    main()
