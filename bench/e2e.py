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
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.report import publish
from fraudflow.local.process import free_port
from fraudflow.simulation.population import users
from fraudflow.simulation.replay import Plan, Replayer, load_rows

ROOT = Path(__file__).resolve().parent.parent


def start_stack(work: Path) -> tuple[subprocess.Popen[str], str, str]:
    api, dash = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDFLOW_", "AWS_", "DATABASE_URL"))}
    env["FRAUDFLOW_LOG_LEVEL"] = "WARNING"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fraudflow.cli",
            "up",
            "--api-port",
            str(api),
            "--dashboard-port",
            str(dash),
            "--no-simulate",
            "--data-dir",
            str(work / "data"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while not any("Press Ctrl-C" in line for line in lines):
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("fraudflow up failed:\n" + "".join(lines))
        lines.append(line)
    url = next(line.split()[1] for line in lines if line.strip().startswith("database"))
    return process, f"http://127.0.0.1:{api}/predict", url


async def drive(url: str, plan: Plan, record: Path, seed: int) -> float:
    rows, labels, _ = load_rows(None, None, seed)
    with record.open("w") as sink:
        replayer = Replayer(url, rows, labels, users(2000, random.Random(seed)), plan, seed=seed, record=sink)
        started = time.monotonic()
        stats = await replayer.run()
    return stats.ok / (time.monotonic() - started)


async def watch_rows(
    database: str, stop: asyncio.Event, seen: dict[str, float], want: set[str], complete: asyncio.Event
) -> None:
    """Note when each row becomes visible; set `complete` once every id in `want` (when given) was seen."""
    conn = await asyncpg.connect(database)
    last = 0
    try:
        while True:
            rows = await conn.fetch(
                "SELECT id, event_id::text AS e FROM fraud_predictions WHERE id > $1 ORDER BY id", last
            )
            now = time.time()
            for row in rows:
                seen[row["e"]] = now
                last = row["id"]
            if want and want <= seen.keys():
                complete.set()
            if stop.is_set() and not rows:
                return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def phase(url: str, database: str, plan: Plan, record: Path, seed: int) -> dict[str, Any]:
    seen: dict[str, float] = {}
    want: set[str] = set()
    stop, complete = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(watch_rows(database, stop, seen, want, complete))
    answered_rate = await drive(url, plan, record, seed)
    text = await asyncio.to_thread(record.read_text)
    answers = [json.loads(line) for line in text.splitlines()]
    drained_at = time.monotonic()
    want.update(a["event_id"] for a in answers)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(complete.wait(), 120)
    drain_s = time.monotonic() - drained_at
    stop.set()
    await watcher
    delays = sorted(seen[a["event_id"]] - a["answered_at"] for a in answers if a["event_id"] in seen)
    return {
        "answered": len(answers),
        "stored": len(delays),
        "answered_per_s": round(answered_rate, 1),
        "drain_after_last_answer_s": round(drain_s, 2),
        "freshness_p50_s": round(delays[len(delays) // 2], 3) if delays else None,
        "freshness_p99_s": round(delays[int(len(delays) * 0.99)], 3) if delays else None,
    }


async def run(rate: float, seconds: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-e2e-"))
    process, url, database = start_stack(work)
    try:
        steady = await phase(url, database, Plan(rate, True, 64, None, seconds), work / "steady.jsonl", 1)
        flat_out = await phase(url, database, Plan(0, False, 64, None, seconds), work / "max.jsonl", 2)
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
