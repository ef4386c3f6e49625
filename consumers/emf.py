"""The worker's metrics into CloudWatch without a scraper: every interval, one line in CloudWatch's embedded
metric format on standard output, which the container's log driver ships and CloudWatch turns into metrics
(namespace `fraudflow/consumer`, per worker). Counters are sent as their increase since the last line."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO

from prometheus_client import CollectorRegistry

NAMESPACE = "fraudflow/consumer"
# Prometheus sample name -> (CloudWatch metric, unit); counters (`_total`) become increases.
SERIES = {
    "fraudflow_consumer_rows_written_total": ("RowsWritten", "Count"),
    "fraudflow_consumer_duplicates_total": ("Duplicates", "Count"),
    "fraudflow_consumer_rejected_total": ("Rejected", "Count"),
    "fraudflow_consumer_shard_failures_total": ("ShardFailures", "Count"),
    "fraudflow_consumer_leases_lost_total": ("LeasesLost", "Count"),
    "fraudflow_consumer_leases_held": ("LeasesHeld", "Count"),
    "fraudflow_consumer_millis_behind_latest": ("MillisBehindLatest", "Milliseconds"),
}


class EmfEmitter:
    def __init__(self, registry: CollectorRegistry, worker_id: str, out: IO[str] = sys.stdout) -> None:
        self.registry = registry
        self.worker_id = worker_id
        self.out = out
        self._previous: dict[str, float] = {}

    def _values(self) -> tuple[dict[str, float], set[str]]:
        """Each series summed over its labels (shards), MillisBehindLatest the worst shard's; and which are
        counters (sent as increases)."""
        values: dict[str, float] = {}
        counters: set[str] = set()
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name not in SERIES:
                    continue
                metric = SERIES[sample.name][0]
                if sample.name.endswith("_total"):
                    counters.add(metric)
                if metric == "MillisBehindLatest":
                    values[metric] = max(values.get(metric, 0.0), sample.value)
                else:
                    values[metric] = values.get(metric, 0.0) + sample.value
        return values, counters

    def emit(self) -> dict[str, object]:
        """Write one line and return it."""
        values, counters = self._values()
        line: dict[str, object] = {"Worker": self.worker_id}
        units = dict(SERIES.values())
        for metric, value in values.items():
            line[metric] = value - self._previous.get(metric, 0.0) if metric in counters else value
        self._previous = values
        line["_aws"] = {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Worker"]],
                    "Metrics": [{"Name": metric, "Unit": units[metric]} for metric in values],
                }
            ],
        }
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()
        return line

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.emit()
