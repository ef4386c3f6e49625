"""Launch `fraudflow up` (no simulator) in a subprocess, as the e2e benchmark and the e2e test both do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fraudflow.net import free_port


@dataclass(frozen=True)
class UpStack:
    process: subprocess.Popen[str]
    api: str  # base URL
    dashboard: str
    database: str
    data: Path


def launch_up(work: Path, extra_env: dict[str, str] | None = None, deadline_s: float = 120) -> UpStack:
    """Start the stack on free ports with data under `work`; returns once it printed that it is up."""
    api, dash = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDFLOW_", "AWS_", "DATABASE_URL"))}
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
        cwd=work,
        env={**env, **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and not any("Press Ctrl-C" in line for line in lines):
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
    if not any("fraudflow is up" in line for line in lines):
        process.kill()
        raise RuntimeError("fraudflow up did not start:\n" + "".join(lines))
    database = next(line.split()[1] for line in lines if line.strip().startswith("database"))
    return UpStack(process, f"http://127.0.0.1:{api}", f"http://127.0.0.1:{dash}/", database, work / "data")
