"""The whole local stack (`fraudflow up`: API, consumer, dashboard on the embedded services) under load.

1. Freshness at a steady rate (default 500 events/s): time from the API's answer to the row being visible
   in PostgreSQL, p50 and p99.
2. Sustained throughput: wrk (a C load generator, so the driver takes little of the 2 cores the stack shares)
   posting /predict as fast as the stack answers; answered events/s, and how long the consumer needs to store
   everything answered. Each part's CPU per event (API, consumer, PostgreSQL, Kinesis emulator, dashboard,
   the driver) says where the ceiling is: on C cores, at most C / (total CPU per event) events/s.

Goals: p99 freshness <= 1.5 s at 500 events/s (issue 7); >= 2,000 events/s answered and stored (issue 18).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench.api import wrk
from bench.report import publish
from bench.stack import launch_up
from fraudflow.simulation.population import users
from fraudflow.simulation.replay import Plan, Replayer, load_rows

ROOT = Path(__file__).resolve().parent.parent


class Answers:
    """Receives the simulator's record lines as they are written; keeps every id and a sample to watch."""

    def __init__(self, sample_every: int = 10) -> None:
        self.ids: list[str] = []
        self.answered_at: dict[str, float] = {}
        self.sample_every = sample_every

    def write(self, line: str) -> int:
        answer = json.loads(line)
        self.ids.append(answer["event_id"])
        if len(self.ids) % self.sample_every == 0:
            self.answered_at[answer["event_id"]] = answer["answered_at"]
        return len(line)


async def drive(url: str, plan: Plan, answers: Answers, seed: int) -> float:
    rows, labels, _, _ = load_rows(None, None, seed)
    replayer = Replayer(url, rows, labels, users(2000, random.Random(seed)), plan, seed=seed, record=answers)  # type: ignore[arg-type]
    started = time.monotonic()
    stats = await replayer.run()
    return stats.ok / (time.monotonic() - started)


async def watch(database: str, answers: Answers, seen: dict[str, float], finished: asyncio.Event) -> None:
    """Poll for the sampled events by id (indexed): commit order across shards does not matter."""
    conn = await asyncpg.connect(database)
    try:
        while not (finished.is_set() and answers.answered_at.keys() <= seen.keys()):
            pending = [uuid.UUID(i) for i in answers.answered_at if i not in seen]
            if pending:
                rows = await conn.fetch(
                    "SELECT event_id::text AS e FROM fraud_predictions WHERE event_id = ANY($1::uuid[])", pending
                )
                now = time.time()
                for row in rows:
                    seen[row["e"]] = now
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def phase(url: str, database: str, plan: Plan, seed: int) -> dict[str, Any]:
    answers, finished = Answers(), asyncio.Event()
    seen: dict[str, float] = {}
    watcher = asyncio.create_task(watch(database, answers, seen, finished))
    answered_rate = await drive(url, plan, answers, seed)
    finished.set()
    last_answer = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher, 120)
    # The watcher follows a sample; wait (up to a deadline) for every answered event before counting.
    ids, deadline = [uuid.UUID(i) for i in answers.ids], time.monotonic() + 60
    conn = await asyncpg.connect(database)
    try:
        while True:
            stored = await conn.fetchval("SELECT count(*) FROM fraud_predictions WHERE event_id = ANY($1::uuid[])", ids)
            if stored >= len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    drain_s = time.monotonic() - last_answer
    delays = sorted(seen[i] - answers.answered_at[i] for i in answers.answered_at if i in seen)
    return {
        "answered": len(answers.ids),
        "stored": int(stored),
        "answered_per_s": round(answered_rate, 1),
        "drain_after_last_answer_s": round(drain_s, 2),
        "freshness_sampled": len(delays),
        "freshness_p50_s": round(delays[len(delays) // 2], 3) if delays else None,
        "freshness_p99_s": round(delays[int(len(delays) * 0.99)], 3) if delays else None,
    }


PARTS = (  # a process's part of the stack, by its command line
    ("api", "api.main:app"),
    ("consumer", " consume "),
    ("dashboard", "dashboard"),
    ("kinesis", "moto_server"),
    ("postgres", "postgres"),
)


def _part(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline()) + " "
    except psutil.Error:
        return "gone"
    return next((name for name, marker in PARTS if marker in command), "supervisor")


def cpu_seconds(stack: psutil.Process, data: Path) -> dict[str, float]:
    """CPU time so far of each part of the stack, and of the driver (this process and its finished wrk runs).
    PostgreSQL detaches from the stack's process tree: its processes are known by the data directory."""
    mine = psutil.Process().cpu_times()
    totals: dict[str, float] = {"driver": mine.user + mine.system + mine.children_user + mine.children_system}
    detached = [p for p in psutil.process_iter(["cmdline"]) if str(data) in " ".join(p.info["cmdline"] or ())]
    postgres = [p for p in detached if _part(p) == "postgres"]
    for pid in {p.pid for p in postgres}:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                postgres.append(child)
    family = {p.pid: p for p in [stack, *stack.children(recursive=True), *postgres]}
    for process in family.values():
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        part = _part(process)
        totals[part] = totals.get(part, 0.0) + times.user + times.system
    return totals


async def _stored(database: str) -> int:
    conn = await asyncpg.connect(database)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM fraud_predictions"))
    finally:
        await conn.close()


async def flat_out(
    url: str, database: str, stack: psutil.Process, data: Path, seconds: float, connections: int
) -> dict[str, Any]:
    before_rows, before_cpu = await _stored(database), cpu_seconds(stack, data)
    result = await asyncio.to_thread(wrk, url.removesuffix("/predict"), int(seconds), connections)
    answered = result["requests"] - result["non_2xx"]
    last_answer, deadline = time.monotonic(), time.monotonic() + 60
    while True:
        stored = await _stored(database) - before_rows
        if stored >= answered or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    drain_s = time.monotonic() - last_answer
    after_cpu = cpu_seconds(stack, data)
    per_event = {
        part: round((after_cpu[part] - before_cpu.get(part, 0.0)) / max(answered, 1) * 1e6, 1) for part in after_cpu
    }
    total = sum(per_event.values())
    cores = psutil.cpu_count() or 1
    return {
        "answered": answered,
        "stored": stored,
        "errors": result["socket_errors"] + result["non_2xx"],
        "answered_per_s": round(result["rps"], 1),
        "p50_ms": round(result["p50_us"] / 1000, 1),
        "p99_ms": round(result["p99_us"] / 1000, 1),
        "stored_per_s": round(stored / (seconds + drain_s), 1),
        "drain_after_last_answer_s": round(drain_s, 2),
        "cpu_us_per_event": dict(sorted(per_event.items(), key=lambda item: -item[1])),
        "cpu_us_per_event_total": round(total, 1),
        "cpu_ceiling_events_per_s": round(cores * 1e6 / total, 1),
    }


async def run(rate: float, seconds: float, connections: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-e2e-"))
    stack = launch_up(work, {"FRAUDFLOW_LOG_LEVEL": "WARNING"})
    process, url, database = stack.process, stack.api + "/predict", stack.database
    try:
        steady = await phase(url, database, Plan(rate, True, 64, None, seconds), 1)
        maximum = await flat_out(url, database, psutil.Process(process.pid), stack.data, seconds, connections)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    return {"steady": {"target_per_s": rate, **steady}, "max": {"connections": connections, **maximum}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    # Enough concurrent clients that batching keeps both cores busy (64 left about a quarter of them idle).
    parser.add_argument("--connections", type=int, default=192, help="wrk connections in the flat-out phase")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    f = asyncio.run(run(args.rate, args.seconds, args.connections))
    s, m = f["steady"], f["max"]
    goals = {
        f"p99 freshness <= 1.5 s at {args.rate:g}/s": s["freshness_p99_s"] is not None
        and s["freshness_p99_s"] <= 1.5
        and s["answered_per_s"] >= 0.95 * args.rate,
        ">= 2000 events/s answered and stored": m["stored"] >= m["answered"] and m["stored_per_s"] >= 2000,
    }
    summary = [
        f"steady {args.rate:g}/s (Poisson): answered {s['answered_per_s']}/s, stored {s['stored']}/{s['answered']}, "
        f"freshness p50 {s['freshness_p50_s']} s, p99 {s['freshness_p99_s']} s",
        f"flat out (wrk, {m['connections']} connections): answered {m['answered_per_s']}/s (p50 {m['p50_ms']} ms, "
        f"p99 {m['p99_ms']} ms), stored {m['stored']}/{m['answered']} ({m['stored_per_s']}/s), consumer drained "
        f"{m['drain_after_last_answer_s']} s after the last answer",
        f"CPU per event (us): {m['cpu_us_per_event']}; total {m['cpu_us_per_event_total']} us, so at most "
        f"{m['cpu_ceiling_events_per_s']} events/s on these cores",
    ] + [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish("e2e", {**f, "goals": goals}, summary)


if __name__ == "__main__":
    main()
