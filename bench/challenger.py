"""Shadow scoring (issue 16): what a challenger costs the API.

The scoring API serving the shipped model set alone, against the same API with a challenger scored in
shadow (a second copy of the shipped set published under another version, so both do the same work), same
run: same moto Kinesis and redis-server, 1 uvicorn worker each, wrk at the maximum rate. The two are measured
alternately, twice each, and the better run of each is compared (the machines are noisy). Goal: >= 0.9x the
throughput. Also reported: the share of transactions the challenger scored (the rest were skipped because it
was behind: its cost is bounded, so under overload it scores a sample).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.api import measure, parse_with_wrk, server, stream_env, wrk_arguments, wrk_table
from bench.report import publish
from fraudflow.local.kinesis import MotoKinesis
from fraudflow.local.redis import EmbeddedRedis
from fraudflow.manifest import Manifest
from fraudflow.registry import Registry, default_models_root, resolve

ROUNDS = 2


def registries(work: Path) -> dict[str, Path]:
    """The shipped registry as it is, and a copy whose challenger is the same set under another version."""
    alone = work / "alone"
    shutil.copytree(default_models_root(), alone)
    challenged = work / "challenged"
    shutil.copytree(default_models_root(), challenged)
    stage = challenged / "versions" / ".staging-bench"
    shutil.copytree(resolve(challenged), stage)
    manifest = Manifest.read(stage)
    # Another review cut changes the version (it is in the content hash) but not one decision: the policy decides.
    thresholds = manifest.thresholds.model_copy(update={"review": manifest.thresholds.review * 0.999})
    edited = manifest.model_copy(update={"thresholds": thresholds})
    edited.model_copy(update={"version": edited.content_version()}).write(stage)
    registry = Registry(challenged)
    registry.challenge(registry.publish(stage), "bench")
    return {"alone": alone, "with_challenger": challenged}


def _counter(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{name}_total{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def run(work: Path, seconds: int, connections: int) -> dict[str, Any]:
    kinesis = MotoKinesis(log_dir=work)
    redis = EmbeddedRedis(work / "redis")
    kinesis.start()
    redis.start()
    roots = registries(work)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in roots}
    shadow: dict[str, float] = {}
    try:
        env = {**stream_env(kinesis), "FRAUDFLOW_REDIS_URL": redis.url}
        for round_ in range(ROUNDS):
            for name, root in roots.items():
                log = work / f"{name}-{round_}.log"
                with server("api.main:app", {**env, "FRAUDFLOW_MODELS_DIR": str(root)}, log) as (api, process):
                    results[name].append(measure(api, process, seconds, connections))
                    if name == "with_challenger":
                        text = httpx.get(api + "/metrics", timeout=5).text
                        scored = _counter(text, "fraudflow_shadow_scored")
                        skipped = _counter(text, "fraudflow_shadow_skipped", '{reason="busy"}')
                        decided = sum(
                            float(v)
                            for v in re.findall(
                                r"^fraudflow_transactions_scored_total\{[^}]*\} (\S+)$", text, re.MULTILINE
                            )
                        )
                        shadow = {
                            "scored": scored,
                            "skipped_busy": skipped,
                            "scored_share": round(scored / max(decided, 1), 3),
                        }
    finally:
        redis.stop()
        kinesis.stop()
    best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
    return {"best": best, "runs": results, "shadow": shadow}


def main() -> None:
    args = parse_with_wrk(wrk_arguments(__doc__))
    work = Path(tempfile.mkdtemp(prefix="fraudflow-bench-"))
    try:
        results = run(work, args.seconds, args.connections)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = results["best"]
    ratios = {
        "throughput_with_over_alone": round(best["with_challenger"]["rps"] / best["alone"]["rps"], 2),
        "api_cpu_alone_over_with": round(
            best["alone"]["server_cpu_us_per_request"] / best["with_challenger"]["server_cpu_us_per_request"], 2
        ),
    }
    goals = {"throughput >= 0.9x with a challenger in shadow": ratios["throughput_with_over_alone"] >= 0.9}
    summary = wrk_table(best)
    summary.append(f"shadow scoring (last run): {results['shadow']}")
    summary.append(f"ratios: {ratios}")
    summary += [f"goal {goal}: {'met' if ok else 'NOT met'}" for goal, ok in goals.items()]
    publish(
        "challenger",
        {
            "results": results,
            "ratios": ratios,
            "goals": goals,
            "setup": {"uvicorn_workers": 1, "load": f"wrk -t1 -c{args.connections}", "rounds": ROUNDS},
        },
        summary,
    )


if __name__ == "__main__":
    main()
