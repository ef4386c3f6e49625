"""Callbacks: the page's controls into filters and queries, and the results into cards, figures and tables."""

from __future__ import annotations

import functools
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from dash import Dash, Input, Output, State, ctx, no_update
from dash.exceptions import PreventUpdate

from dash_app import figures, queries
from dash_app.database import Database, DatabaseUnavailable
from dash_app.layout import KPIS, PAGE_SIZE
from dash_app.queries import Filters

SPANS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
STALE_LEASE_S = 30
FILTER_INPUTS = [
    Input("range", "value"),
    Input("custom-start", "value"),
    Input("custom-end", "value"),
    Input("f-country", "value"),
    Input("f-source", "value"),
    Input("f-device", "value"),
    Input("f-decision", "value"),
    Input("f-min-proba", "value"),
]


def _parse_local(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)  # the page's times are UTC
    except ValueError:
        return None


def make_filters(
    range_: str | None,
    start: str | None,
    end: str | None,
    countries: list[str] | None,
    sources: list[str] | None,
    devices: list[str] | None,
    decisions: list[str] | None,
    min_proba: float | None,
    now: datetime | None = None,
) -> Filters:
    now = now or datetime.now(UTC)
    custom_start, custom_end = _parse_local(start), _parse_local(end)
    if range_ == "custom" and custom_start and custom_end and custom_start < custom_end:
        window = (custom_start, custom_end)
    else:
        window = (now - SPANS.get(range_ or "1h", SPANS["1h"]), now)
    proba = float(min_proba) if isinstance(min_proba, int | float) and 0 <= min_proba <= 1 else 0.0
    return Filters(
        window[0],
        window[1],
        tuple(countries or ()),
        tuple(sources or ()),
        tuple(devices or ()),
        tuple(decisions or ()),
        proba,
    )


def _bucket_label(size: timedelta) -> str:
    seconds = int(size.total_seconds())
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min" if seconds < 3600 else f"{seconds // 3600} h"


def _kpi_values(k: dict[str, Any], leases: list[dict[str, Any]]) -> list[str]:
    lag = max((lease["millis_behind_latest"] or 0 for lease in leases), default=None)
    stale = [lease for lease in leases if lease["owner"] and (lease["renewed_s_ago"] or 0) > STALE_LEASE_S]
    lag_text = "-" if lag is None else f"{lag / 1000:.1f} s"
    if stale:
        lag_text += f" ⚠ {len(stale)} stale lease(s)"
    p50, p95 = k["latency_p50_s"], k["latency_p95_s"]
    return [
        f"{k['transactions']:,}",
        f"{k['events_per_s']:.1f}",
        f"{k['frauds']:,}",
        f"{k['fraud_rate']:.2%}",
        f"{k['reviews']:,} / {k['declines']:,}",
        "-" if k["mean_proba"] is None else f"{k['mean_proba']:.3f}",
        "-" if p50 is None else f"{p50:.2f} s / {p95:.2f} s",
        lag_text,
        ", ".join(k["model_versions"]) or "-",
    ]


def register(app: Dash, db: Database) -> None:
    graph_ids = ["g-volume", "g-latency", "g-proba", "g-anomaly", "g-map", "g-country", "g-source", "g-device"]

    @app.callback(
        [Output(i, "children") for i, _ in KPIS]
        + [Output(g, "figure") for g in graph_ids]
        + [
            Output("leases", "data"),
            Output("banner", "children"),
            Output("banner", "style"),
            Output("refreshed", "children"),
            Output("f-country", "options"),
            Output("f-source", "options"),
            Output("f-device", "options"),
        ],
        [Input("tick", "n_intervals"), Input("pause", "value"), *FILTER_INPUTS],
    )
    def refresh(_tick: int | None, pause: list[str] | None, *controls: Any) -> list[Any]:
        if ctx.triggered_id == "tick" and pause and "paused" in pause:
            raise PreventUpdate
        f = make_filters(*controls)
        try:
            result = db.gather(queries.refresh(f))
        except DatabaseUnavailable as error:
            banner = f"Database unavailable ({error}); showing the last data, retrying every refresh."
            style = {"background": "#ffebe9", "border": "1px solid #d1242f", "padding": "8px", "marginBottom": "12px"}
            return [no_update] * (len(KPIS) + len(graph_ids) + 1) + [banner, style] + [no_update] * 4
        bucket = _bucket_label(queries.bucket_for(f.end - f.start))
        figs = [
            figures.volume(result["volume"], bucket),
            figures.latency(result["volume"]),
            figures.distribution(result["distributions"], "fraud_proba", "Fraud probability by decision"),
            figures.distribution(result["distributions"], "anomaly_score", "Anomaly score by decision"),
            figures.places(result["places"]),
            figures.breakdown(result["by_country"], "country"),
            figures.breakdown(result["by_source"], "source"),
            figures.breakdown(result["by_device"], "device_type"),
        ]
        lease_rows = [
            {
                "shard_id": f"{lease['stream']}/{lease['shard_id']}",
                "owner": lease["owner"] or "-",
                "lag_ms": lease["millis_behind_latest"],
                "checkpoint_age_s": None
                if lease["checkpoint_age_s"] is None
                else round(float(lease["checkpoint_age_s"]), 1),
                "renewed_s_ago": round(float(lease["renewed_s_ago"]), 1),
            }
            for lease in result["leases"]
        ]
        refreshed = f"updated {datetime.now(UTC):%H:%M:%S} UTC"
        return [
            *_kpi_values(result["kpis"], result["leases"]),
            *figs,
            lease_rows,
            "",
            {"display": "none"},
            refreshed,
            result["options"]["country"],
            result["options"]["source"],
            result["options"]["device_type"],
        ]

    @app.callback(
        [Output("flagged", "data"), Output("flagged", "page_count")],
        [Input("flagged", "page_current"), Input("flagged", "sort_by"), Input("tick", "n_intervals"), *FILTER_INPUTS],
        State("pause", "value"),
    )
    def flagged(
        page: int | None, sort_by: list[dict[str, str]] | None, _tick: int | None, *rest: Any
    ) -> tuple[Any, Any]:
        *controls, pause = rest
        if ctx.triggered_id == "tick" and pause and "paused" in pause:
            raise PreventUpdate
        sort = (sort_by or [{"column_id": "received_at", "direction": "desc"}])[0]
        column = sort["column_id"] if sort["column_id"] in queries.SORTABLE else "received_at"
        try:
            page_query = functools.partial(
                queries.flagged,
                page=page or 0,
                page_size=PAGE_SIZE,
                sort=column,
                descending=sort["direction"] == "desc",
            )
            total, rows = db.run(page_query, make_filters(*controls))
        except DatabaseUnavailable:
            return no_update, no_update
        for row in rows:
            row["event_id"] = str(row["event_id"])
            row["received_at"] = row["received_at"].strftime("%Y-%m-%d %H:%M:%S")
            for key in ("fraud_proba", "anomaly_score"):
                row[key] = round(row[key], 4)
        return rows, max(1, math.ceil(total / PAGE_SIZE))

    @app.callback(Output("detail", "children"), Input("flagged", "active_cell"), State("flagged", "data"))
    def detail(cell: dict[str, Any] | None, rows: list[dict[str, Any]] | None) -> str:
        if not cell or not rows or cell["row"] >= len(rows):
            return "Click a row to see the whole event, its 30 features and its scores."
        try:
            event = db.run(queries.event, uuid.UUID(rows[cell["row"]]["event_id"]))
        except DatabaseUnavailable as error:
            return f"Database unavailable: {error}"
        if event is None:
            return "This event is no longer in the table."
        features = event.pop("features") or []
        lines = [f"{key}: {value}" for key, value in event.items()]
        lines.append("features (Time, V1..V28, Amount): " + ", ".join(f"{v:.4g}" for v in features))
        return "\n".join(lines)
