"""The consumer's metrics as CloudWatch embedded-metric-format lines: what CloudWatch needs to extract them."""

from __future__ import annotations

import io
import json

from consumers.emf import NAMESPACE, EmfEmitter
from consumers.metrics import ConsumerMetrics


def test_lines_carry_increases_and_levels_in_the_embedded_metric_format() -> None:
    metrics = ConsumerMetrics()
    out = io.StringIO()
    emitter = EmfEmitter(metrics.registry, "w1", out)
    metrics.rows.inc(120)
    metrics.rejected.inc(2)
    metrics.millis_behind.labels("shard-0").set(40)
    metrics.millis_behind.labels("shard-1").set(900)
    metrics.leases_held.set(2)
    metrics.shard_failures.labels("shard-0").inc()
    metrics.shard_failures.labels("shard-1").inc()
    first = emitter.emit()
    metrics.rows.inc(30)
    second = emitter.emit()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [first, second]
    assert (first["RowsWritten"], first["Rejected"], first["MillisBehindLatest"], first["LeasesHeld"]) == (
        120,
        2,
        900,  # the worst shard
        2,
    )
    assert first["ShardFailures"] == 2  # summed over shards
    assert (second["RowsWritten"], second["Rejected"], second["LeasesHeld"]) == (30, 0, 2)  # increases, levels
    directive = lines[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["Worker"]]
    assert lines[0]["Worker"] == "w1"
    named = {metric["Name"] for metric in directive["Metrics"]}
    assert {"RowsWritten", "Rejected", "ShardFailures", "MillisBehindLatest", "LeasesHeld"} <= named
    assert all(name in lines[0] for name in named)  # every declared metric has its value in the line
    assert isinstance(lines[0]["_aws"]["Timestamp"], int)
