"""Prometheus metrics of the scoring API, in a registry per app (tests build several apps)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fraudflow.producer import ProducerHooks

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_LAG_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._children: dict[tuple[Counter, tuple[str, ...]], Any] = {}
        self.requests = Counter("fraudflow_api_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "fraudflow_api_request_seconds",
            "HTTP request latency",
            ["route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.scoring_batch = Histogram(
            "fraudflow_scoring_batch_rows",
            "Rows per onnxruntime call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.transactions = Counter("fraudflow_transactions_scored", "Transactions scored", ["decision"], registry=r)
        self.publish_latency = Histogram(
            "fraudflow_kinesis_put_seconds", "PutRecords call latency", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.publish_records = Counter("fraudflow_kinesis_records_put", "Records acknowledged by Kinesis", registry=r)
        self.publish_failures = Counter(
            "fraudflow_kinesis_publish_failures", "Records that failed a put attempt", ["reason"], registry=r
        )
        self.buffer_depth = Gauge(
            "fraudflow_kinesis_buffer_records", "Records accepted, not yet acknowledged", registry=r
        )
        self.rejected = Counter("fraudflow_api_unavailable", "Requests answered 503", ["reason"], registry=r)
        self.features_degraded = Counter(
            "fraudflow_features_degraded",
            "Transactions scored without behaviour features, by reason: timeout (store slower than the budget), "
            "unavailable (store down), no_store (none configured)",
            ["reason"],
            registry=r,
        )
        self.features_seconds = Histogram(
            "fraudflow_features_seconds", "Online feature store call latency", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.loop_lag = Histogram(
            "fraudflow_api_event_loop_lag_seconds",
            "How late the event loop resumes a task that is due (sampled every 50 ms): the wait every awaited "
            "reply adds; milliseconds mean the worker is saturated",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.decided_by = Counter(
            "fraudflow_decisions", "Decisions by what decided them", ["decided_by", "decision"], registry=r
        )
        self.rule_failures = Counter(
            "fraudflow_rule_failures",
            "Rule evaluations that raised at run time (the rule was skipped)",
            ["rule"],
            registry=r,
        )
        self.rule_unevaluated = Counter(
            "fraudflow_rule_unevaluated",
            "Rule evaluations skipped because a field the rule reads was unknown (e.g. features degraded)",
            ["rule"],
            registry=r,
        )
        self.policy_stale = Gauge(
            "fraudflow_policy_stale",
            "1 while the rules and lists cannot be refreshed from PostgreSQL (the last ones loaded apply)",
            registry=r,
        )
        self.policy_age = Gauge(
            "fraudflow_policy_revision_age_seconds",
            "Seconds since the rules and lists were last confirmed current",
            registry=r,
        )
        self.policy_rules = Gauge("fraudflow_policy_rules", "Enabled rules applied by this process", registry=r)
        self.model = Gauge(
            "fraudflow_model_info", "Model sets loaded (value 1): the champion decides", ["version", "role"], registry=r
        )
        self.shadow_scored = Counter(
            "fraudflow_shadow_scored", "Transactions the challenger scored in shadow", registry=r
        )
        self.shadow_skipped = Counter(
            "fraudflow_shadow_skipped",
            "Transactions the challenger did not score or whose scores were not published, by reason: busy (the "
            "shadow scorer was behind: its cost is bounded), failed (it raised), unpublished (the stream refused)",
            ["reason"],
            registry=r,
        )

    def producer_hooks(self) -> ProducerHooks:
        def on_call(seconds: float, records: int, failed: int) -> None:
            self.publish_latency.observe(seconds)
            self.publish_records.inc(records - failed)

        def on_failure(reason: str, records: int) -> None:
            self.publish_failures.labels(reason).inc(records)

        return ProducerHooks(on_call=on_call, on_failure=on_failure)

    def child(self, metric: Counter, *labels: str) -> Any:
        """A labelled child, cached: `labels()` takes a lock and builds a key on every call, which counts when
        it runs per transaction and per rule."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def serving(self, version: str, challenger: str | None = None) -> None:
        self.model.clear()
        self.model.labels(version, "champion").set(1)
        if challenger is not None:
            self.model.labels(challenger, "challenger").set(1)
