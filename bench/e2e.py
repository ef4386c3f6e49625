"""The whole local stack (`fraudflow up`: API, consumer, dashboard on the embedded services) under load.

1. Freshness at a steady rate (default 500 events/s): time from the API's answer to the row being visible
   in PostgreSQL, p50 and p99.
2. Sustained throughput: the simulator at full speed; answered events/s, and how long the consumer needs
   to store everything answered.

Goal (issue 7): p99 freshness <= 1.5 s at 500 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

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
    rows, labels, _ = load_rows(None, None, seed)
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


async def run(rate: float, seconds: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-e2e-"))
    stack = launch_up(work, {"FRAUDFLOW_LOG_LEVEL": "WARNING"})
    process, url, database = stack.process, stack.api + "/predict", stack.database
    try:
        steady = await phase(url, database, Plan(rate, True, 64, None, seconds), 1)
        flat_out = await phase(url, database, Plan(0, False, 64, None, seconds), 2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    return {"steady": {"target_per_s": rate, **steady}, "max": flat_out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    f = asyncio.run(run(args.rate, args.seconds))
    s, m = f["steady"], f["max"]
    goals = {
        f"p99 freshness <= 1.5 s at {args.rate:g}/s": s["freshness_p99_s"] is not None
        and s["freshness_p99_s"] <= 1.5
        and s["answered_per_s"] >= 0.95 * args.rate
    }
    summary = [
        f"steady {args.rate:g}/s (Poisson): answered {s['answered_per_s']}/s, stored {s['stored']}/{s['answered']}, "
        f"freshness p50 {s['freshness_p50_s']} s, p99 {s['freshness_p99_s']} s",
        f"flat out: answered {m['answered_per_s']}/s, stored {m['stored']}/{m['answered']}, consumer drained "
        f"{m['drain_after_last_answer_s']} s after the last answer; freshness p99 {m['freshness_p99_s']} s",
    ] + [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish("e2e", {**f, "goals": goals}, summary)


if __name__ == "__main__":
    main()
