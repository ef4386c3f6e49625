"""Prometheus metrics of a consumer worker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fraudflow.drift import SCORE, DriftReport


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.records = Counter("fraudflow_consumer_records", "User records read", ["shard"], registry=r)
        self.bytes = Counter("fraudflow_consumer_bytes", "Record bytes read", ["shard"], registry=r)
        self.rows = Counter("fraudflow_consumer_rows_written", "Rows inserted into fraud_predictions", registry=r)
        self.duplicates = Counter("fraudflow_consumer_duplicates", "Rows skipped: event_id already stored", registry=r)
        self.rejected = Counter("fraudflow_consumer_rejected", "Records sent to rejected_records", registry=r)
        self.flush_seconds = Histogram(
            "fraudflow_consumer_flush_seconds",
            "Flush transaction latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.flush_rows = Histogram(
            "fraudflow_consumer_flush_rows",
            "Rows per flush",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.millis_behind = Gauge(
            "fraudflow_consumer_millis_behind_latest", "MillisBehindLatest per shard", ["shard"], registry=r
        )
        self.retries = Counter(
            "fraudflow_consumer_retries", "Retried Kinesis or PostgreSQL calls", ["reason"], registry=r
        )
        self.shard_failures = Counter(
            "fraudflow_consumer_shard_failures",
            "Shard consumers that failed (the lease is released and taken again)",
            ["shard"],
            registry=r,
        )
        self.leases_held = Gauge("fraudflow_consumer_leases_held", "Leases this worker holds", registry=r)
        self.leases_taken = Counter("fraudflow_consumer_leases_taken", "Leases taken (incl. stolen)", registry=r)
        self.leases_lost = Counter("fraudflow_consumer_leases_lost", "Leases lost to another worker", registry=r)
        self.workers = Gauge("fraudflow_consumer_workers_seen", "Live workers seen in the lease table", registry=r)
        self.drift_psi = Gauge(
            "fraudflow_drift_psi",
            "Population stability index over the last complete hour against the model version's training "
            'reference: the score (input="score") and each model input. 0.1 watch, 0.25 act',
            ["model_version", "input"],
            registry=r,
        )
        self.decision_share = Gauge(
            "fraudflow_decision_share",
            "Share of the last complete hour's transactions by decision",
            ["model_version", "decision"],
            registry=r,
        )
        self.degraded_share = Gauge(
            "fraudflow_degraded_share",
            "Share of the last complete hour's transactions scored without behaviour features",
            ["model_version"],
            registry=r,
        )

    def drift(self, reports: list[DriftReport]) -> None:
        for gauge in (self.drift_psi, self.decision_share, self.degraded_share):
            gauge.clear()
        for report in reports:
            version = report.model_version
            if report.score_psi is not None:
                self.drift_psi.labels(version, SCORE).set(report.score_psi)
            for name, value in report.features_psi.items():
                self.drift_psi.labels(version, name).set(value)
            for decision in ("approve", "review", "decline"):
                self.decision_share.labels(version, decision).set(report.shares[decision])
            self.degraded_share.labels(version).set(report.shares["degraded"])
