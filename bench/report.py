"""What every benchmark reports: the command, the hardware, the figures, and a JSON copy in bench/results/."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}


def per_call_seconds(call: Callable[[], object], *, min_time: float = 0.3, repeats: int = 5) -> float:
    """Median over `repeats` runs of the mean time per call, each run lasting at least `min_time`."""
    call()
    runs = []
    for _ in range(repeats):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < min_time:
            call()
            count += 1
        runs.append(elapsed / count)
    runs.sort()
    return runs[len(runs) // 2]


def publish(name: str, figures: dict[str, Any], summary: list[str]) -> Path:
    command = "python -m bench." + name + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    result = {
        "benchmark": name,
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": hardware(),
        **figures,
    }
    print(f"$ {command}")
    print("hardware:", ", ".join(f"{k}={v}" for k, v in result["hardware"].items()))
    print("\n".join(summary))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path
