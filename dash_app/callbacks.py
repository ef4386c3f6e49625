"""Callbacks: the page's controls into filters and queries, and the results into cards, figures and tables."""

from __future__ import annotations

import csv
import functools
import io
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dash_app import decisions, figures, models_page, pages, queries, review
from dash_app.database import Database, DatabaseUnavailable
from dash_app.layout import FLAGGED_COLUMNS, GRAPHS, KPIS, PAGE_SIZE
from dash_app.queries import FLAGGED_COUNT_LIMIT, Filters

SPANS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# A lease not renewed for the consumer's failover time belongs to a worker that is dead or frozen: its shard
# is not being stored, whatever its last reported lag says.
STALE_LEASE_S = 10
API_SILENT_S = 30  # 6 heartbeats missed: the API process stopped, or cannot publish
UNAVAILABLE_WARNING = 0.01  # share of transactions answered 503
QUIET_S = 60  # no new row for this long with healthy leases: traffic stopped, or the API cannot publish
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


# Callback arguments come from the browser, so any JSON value may arrive: each is checked for its type and range
# and replaced by its default when it does not fit, never passed on to fail later as an HTML 500.
MAX_PAGE = 1_000_000


def _parse_local(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)  # the page's times are UTC
    except ValueError:
        return None


def _strings(values: object) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str)) if isinstance(values, list) else ()


def _page(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PAGE else 0


def _sort(sort_by: object) -> tuple[str, bool]:
    """(column, descending) of the table's first sort, or the newest first."""
    if isinstance(sort_by, list) and sort_by and isinstance(first := sort_by[0], dict):
        column, direction = first.get("column_id"), first.get("direction")
        if isinstance(column, str) and column in queries.SORTABLE and direction in {"asc", "desc"}:
            return column, direction == "desc"
    return "received_at", True


def _event_id(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _active_cell(rows: list[dict[str, Any]], selected: object) -> dict[str, Any] | None:
    """The table's highlight on the selected event's row on this page, wherever the refresh moved it."""
    for index, row in enumerate(rows):
        if row["id"] == selected:
            return {"row": index, "column": 0, "column_id": "received_at", "row_id": row["id"]}
    return None


def make_filters(
    range_: object,
    start: object,
    end: object,
    countries: object,
    sources: object,
    devices: object,
    decisions: object,
    min_proba: object,
    now: datetime | None = None,
) -> Filters:
    now = now or datetime.now(UTC)
    custom_start, custom_end = _parse_local(start), _parse_local(end)
    if range_ == "custom" and custom_start and custom_end and custom_start < custom_end:
        window = (custom_start, custom_end)
    else:
        window = (now - SPANS.get(range_ if isinstance(range_, str) else "1h", SPANS["1h"]), now)
    proba = 0.0
    if isinstance(min_proba, int | float) and not isinstance(min_proba, bool) and 0 <= min_proba <= 1:
        proba = float(min_proba)
    return Filters(
        window[0], window[1], _strings(countries), _strings(sources), _strings(devices), _strings(decisions), proba
    )


_ALERT = {"background": "#ffebe9", "border": "1px solid #d1242f", "padding": "8px", "marginBottom": "12px"}
_WARNING = {"background": "#fff8c5", "border": "1px solid #d4a72c", "padding": "8px", "marginBottom": "12px"}
_STALE = {"opacity": 0.45}


def range_problem(range_: object, start: object, end: object) -> str | None:
    """Why a custom range cannot be shown (the page then shows the last hour and says so)."""
    if range_ != "custom":
        return None
    custom_start, custom_end = _parse_local(start), _parse_local(end)
    if custom_start is None or custom_end is None:
        return "Custom range: enter both a start and an end (YYYY-MM-DD HH:MM, UTC); showing the last hour."
    if custom_end <= custom_start:
        return "Custom range: the end is not after the start; showing the last hour."
    return None


# The view in the URL's query, so a link shows what its sender saw: (query key, several values or one).
URL_VIEW = (
    ("range", False),
    ("from", False),
    ("to", False),
    ("country", True),
    ("source", True),
    ("device", True),
    ("decision", True),
    ("min_proba", False),
)


def view_to_query(values: list[Any]) -> str:
    pairs: list[tuple[str, str]] = []
    for (key, several), value in zip(URL_VIEW, values, strict=True):
        if several:
            pairs += [(key, v) for v in _strings(value)]
        elif isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
            pairs.append((key, str(value)))
    return "?" + urlencode(pairs) if pairs else ""


def view_from_query(search: object) -> list[Any] | None:
    """The filter values a query names (None: it names none, so the page keeps its own)."""
    query = parse_qs(search.removeprefix("?")) if isinstance(search, str) else {}
    if not any(key in query for key, _ in URL_VIEW):
        return None
    values: list[Any] = []
    for key, several in URL_VIEW:
        given = query.get(key, [])
        values.append(given if several else (given[0] if given else None))
    if values[0] not in SPANS and values[0] != "custom":
        values[0] = "1h"
    try:
        values[-1] = float(values[-1]) if values[-1] is not None else 0
    except ValueError:
        values[-1] = 0
    return values


def _model_row(row: dict[str, Any]) -> dict[str, Any]:
    n = row["transactions"]
    return {
        "model_version": row["model_version"],
        "transactions": n,
        "flagged": f"{(row['reviews'] + row['declines']) / n:.2%}",
        "declined": f"{row['declines'] / n:.2%}",
        "mean_proba": round(row["mean_proba"], 4),
    }


def _paused(pause: object) -> bool:
    return isinstance(pause, list) and "paused" in pause


def _bucket_label(size: timedelta) -> str:
    seconds = int(size.total_seconds())
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min" if seconds < 3600 else f"{seconds // 3600} h"


def health(leases: list[dict[str, Any]], newest_s: float | None, api: dict[str, Any] | None = None) -> tuple[str, str]:
    """The pipeline's state in words, and its level: ok, warning or failure. `api` is queries.api_flow's
    answer (None: not known)."""
    text, level = _consumer_health(leases, newest_s)
    if api is None:
        return text, level
    api_text, api_level = _api_health(api)
    worst = max(level, api_level, key=_LEVELS.index)
    return f"{text}; {api_text}", worst


_LEVELS = ("ok", "warning", "failure")


def _consumer_health(leases: list[dict[str, Any]], newest_s: float | None) -> tuple[str, str]:
    stale = [lease for lease in leases if (lease["renewed_s_ago"] or 0) > STALE_LEASE_S and lease["owner"]]
    unowned = [lease for lease in leases if not lease["owner"]]
    newest = "no rows yet" if newest_s is None else f"newest row {_age(newest_s)} ago"
    if stale or (leases and len(unowned) == len(leases)):
        shards = len(stale) or len(unowned)
        return f"FAILING: {shards} shard(s) not consumed (no live worker); {newest}", "failure"
    if not leases:
        return f"no consumer has started; {newest}", "failure"
    lag = max(lease["millis_behind_latest"] or 0 for lease in leases) / 1000
    if newest_s is None or newest_s > QUIET_S:
        return f"quiet: {newest}; consumer lag {lag:.1f} s", "warning"
    return f"OK: {newest}; consumer lag {lag:.1f} s", "ok"


def _api_health(api: dict[str, Any]) -> tuple[str, str]:
    """Published against stored, and 503s, from the API processes' heartbeats."""
    if api["silent_s"] is None:
        return "API: no heartbeat in the last hour", "warning"
    if api["silent_s"] > API_SILENT_S:
        return f"API: no heartbeat for {_age(api['silent_s'])}", "warning"
    answered, published, stored = api["answered"], api["published"], api["stored"]
    rate = api["unavailable"] / answered if answered else 0.0
    text = (
        f"API: {api['processes']} process(es); 5 min to 1 min ago: {published:,} published, {stored:,} stored, "
        f"{rate:.1%} answered 503"
    )
    if published > stored:
        return f"{text}: {published - stored:,} published but not stored", "warning"
    if rate > UNAVAILABLE_WARNING:
        return text, "warning"
    return text, "ok"


def _age(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.0f} h"
    )


_HEALTH_STYLE = {
    "ok": {"fontSize": "15px", "fontWeight": "600", "color": "#1a7f37"},
    "warning": {"fontSize": "15px", "fontWeight": "600", "color": "#9a6700"},
    "failure": {"fontSize": "15px", "fontWeight": "600", "color": "#d1242f"},
}


def _kpi_values(k: dict[str, Any], confirmed: dict[str, Any], health_text: str) -> list[str]:
    p50, p95 = k["latency_p50_s"], k["latency_p95_s"]
    return [
        f"{k['transactions']:,}",
        f"{k['events_per_s']:.3g}",
        f"{k['flagged']:,}",
        f"{k['flag_rate']:.2%}",
        f"{confirmed['confirmed']:,}: {confirmed['confirmed_flagged']:,} flagged",
        f"{k['reviews']:,} / {k['declines']:,}",
        "-" if k["mean_proba"] is None else f"{k['mean_proba']:.3f}",
        "-" if p50 is None else f"{p50:.2f} s / {p95:.2f} s",
        health_text,
        ", ".join(k["model_versions"]) or "-",
    ]


def register(app: Dash, db: Database, model: figures.ServedModel | None = None) -> None:
    graph_ids = GRAPHS
    cuts = model.cuts if model else None
    graph = figures.graph_config(app.get_asset_url(figures.TOPOJSON))

    @app.callback(
        [Output(i, "children") for i, _ in KPIS]
        + [Output(g, "figure") for g in graph_ids]
        + [
            Output("leases", "data"),
            Output("models", "data"),
            Output("banner", "children"),
            Output("banner", "style"),
            Output("refreshed", "children"),
            Output("last-refresh", "data"),
            Output("f-country", "options"),
            Output("f-source", "options"),
            Output("f-device", "options"),
            Output("figures", "style"),
            Output("kpi-health", "style"),
        ],
        [Input("tick", "n_intervals"), Input("pause", "value"), *FILTER_INPUTS],
        State("last-refresh", "data"),
    )
    def refresh(_tick: object, pause: object, *rest: Any) -> list[Any]:
        *controls, last = rest
        if ctx.triggered_id == "tick" and _paused(pause):
            raise PreventUpdate
        f = make_filters(*controls)
        try:
            result = db.gather(queries.refresh(f))
        except DatabaseUnavailable as error:
            since = f" from {last}" if isinstance(last, str) else ""
            banner = f"Database unavailable: {error}. The figures below are stale{since}; retrying every refresh."
            unchanged = [no_update] * (len(KPIS) + len(graph_ids) + 2)
            stale = f"STALE: last updated {last}" if isinstance(last, str) else "no data yet"
            return [*unchanged, banner, _ALERT, stale, *[no_update] * 4, _STALE, no_update]
        bucket = _bucket_label(queries.bucket_for(f.end - f.start))
        figs = [
            figures.volume(result["volume"], bucket, (f.start, f.end)),
            figures.latency(result["volume"], (f.start, f.end)),
            figures.distribution(result["distributions"], "fraud_proba", "Fraud probability by decision", cuts),
            figures.distribution(result["distributions"], "anomaly_score", "Anomaly score by decision"),
            figures.decision_rates(result["volume"], (f.start, f.end), model),
            figures.places(result["places"]),
            figures.breakdown(result["by_country"], "country"),
            figures.breakdown(result["by_city"], "city"),
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
        refreshed = f"{datetime.now(UTC):%H:%M:%S} UTC"
        problem = range_problem(*controls[:3])
        health_text, level = health(result["leases"], result["newest_row_age_s"], result["api_flow"])
        return [
            *_kpi_values(result["kpis"], result["confirmed"], health_text),
            *figs,
            lease_rows,
            [_model_row(r) for r in result["models"]],
            problem or "",
            _WARNING if problem else {"display": "none"},
            f"updated {refreshed}",
            refreshed,  # when the figures were fetched, for the stale banner
            result["options"]["country"],
            result["options"]["source"],
            result["options"]["device_type"],
            {},
            _HEALTH_STYLE[level],
        ]

    @app.callback(
        [
            Output("flagged", "data"),
            Output("flagged", "page_count"),
            Output("flagged", "active_cell"),
            Output("flagged", "selected_cells"),
        ],
        [Input("flagged", "page_current"), Input("flagged", "sort_by"), Input("tick", "n_intervals"), *FILTER_INPUTS],
        State("pause", "value"),
        State("selected-event", "data"),
    )
    def flagged(page: object, sort_by: object, _tick: object, *rest: Any) -> tuple[Any, ...]:
        *controls, pause, selected = rest
        if ctx.triggered_id == "tick" and _paused(pause):
            raise PreventUpdate
        column, descending = _sort(sort_by)
        try:
            page_query = functools.partial(
                queries.flagged, page=_page(page), page_size=PAGE_SIZE, sort=column, descending=descending
            )
            total, rows = db.run(page_query, make_filters(*controls))
        except DatabaseUnavailable:
            return no_update, no_update, no_update, no_update
        for row in rows:
            row["event_id"] = row["id"] = str(row["event_id"])  # `id`: the row id DataTable reports on a click
            row["received_at"] = row["received_at"].strftime("%Y-%m-%d %H:%M:%S")
            for key in ("fraud_proba", "anomaly_score"):
                row[key] = round(row[key], 4)
            row["amount"] = None if row["amount"] is None else round(row["amount"], 2)  # stored as float32
        cell = _active_cell(rows, selected)
        return rows, max(1, math.ceil(total / PAGE_SIZE)), cell, [cell] if cell else []

    @app.callback(
        [Output("url", "search"), *(Output(i.component_id, i.component_property) for i in FILTER_INPUTS)],
        [Input("url", "search"), *FILTER_INPUTS],
        State("url", "pathname"),
    )
    def view_in_url(search: object, *rest: Any) -> list[Any]:
        """The URL and the filters follow each other: a link opens on its view, a change updates the link. A
        subject's page keeps a clean URL."""
        *values, path = rest
        unchanged = [no_update] * len(FILTER_INPUTS)
        if pages.route(path) is not None:
            return [no_update, *unchanged]
        if ctx.triggered_id in (None, "url"):  # the page opened, or the browser went back or forward
            named = view_from_query(search)
            if named is not None:
                return [no_update, *named]
        query = view_to_query(values)
        return [no_update if query == search else query, *unchanged]

    @app.callback(
        Output("download", "data"),
        Input("export", "n_clicks"),
        [State("flagged", "sort_by"), *(State(i.component_id, i.component_property) for i in FILTER_INPUTS)],
        prevent_initial_call=True,
    )
    def export(_clicks: object, sort_by: object, *controls: Any) -> Any:
        """The flagged table as CSV: every row of the current range, filters and order (up to the table's cap)."""
        column, descending = _sort(sort_by)
        f = make_filters(*controls)
        page_query = functools.partial(
            queries.flagged, page=0, page_size=FLAGGED_COUNT_LIMIT, sort=column, descending=descending
        )
        try:
            _total, rows = db.run(page_query, f)
        except DatabaseUnavailable:
            return no_update
        out = io.StringIO()
        writer = csv.DictWriter(
            out, fieldnames=[key for key, _ in FLAGGED_COLUMNS] + ["event_id"], extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
        name = f"flagged-{f.start:%Y%m%dT%H%M}-{f.end:%Y%m%dT%H%M}.csv"
        return {"content": out.getvalue(), "filename": name, "type": "text/csv"}

    @app.callback(
        [
            Output("subject", "children"),
            Output("monitor", "style"),
            Output("tick", "disabled"),
            Output("decisions", "style"),
            Output("models-page", "style"),
            Output("review-page", "style"),
        ],
        Input("url", "pathname"),
    )
    def show(path: object) -> tuple[Any, ...]:
        """A subject's page at its own URL, one of the pages (rules and lists, models, review queue), or the
        monitor (and its refresh)."""
        hidden = {"display": "none"}
        own_pages = (decisions.PATH, models_page.PATH, review.PATH)
        if path in own_pages:
            return [], hidden, True, *({} if path == own else hidden for own in own_pages)
        subject = pages.route(path)
        if subject is None:
            return [], {}, False, hidden, hidden, hidden
        kind, value = subject
        try:
            if kind == "tx":
                event_id = _event_id(value)
                event = None if event_id is None else db.run(queries.event, event_id)
                page = pages.transaction(value, event, model)
            else:
                found = db.gather(
                    {"history": (queries.history, (kind, value)), "shared": (queries.shared_with, (kind, value))}
                )
                page = pages.entity(kind, value, found["history"], found["shared"], graph)
        except DatabaseUnavailable as error:
            page = html.Div(f"Database unavailable: {error}. Reload the page to retry.", style=_ALERT)
        return page, hidden, True, hidden, hidden, hidden

    @app.callback(Output("url", "pathname"), Input("search", "value"), prevent_initial_call=True)
    def search(query: object) -> Any:
        return pages.target(query) or no_update

    @app.callback(Output("selected-event", "data"), Input("flagged", "active_cell"))
    def select(cell: object) -> Any:
        row_id = cell.get("row_id") if isinstance(cell, dict) else None
        return str(event_id) if (event_id := _event_id(row_id)) is not None else no_update

    @app.callback(Output("detail", "children"), Input("selected-event", "data"))
    def detail(selected: object) -> Any:
        if (event_id := _event_id(selected)) is None:
            return "Click a row to see the whole event, its 30 features and its scores."
        try:
            event = db.run(queries.event, event_id)
        except DatabaseUnavailable as error:
            return f"Database unavailable: {error}"
        if event is None:
            return "This event is no longer in the table."
        features = event.pop("features") or []
        if event.get("amount") is not None:
            event["amount"] = f"{event['amount']:,.2f}"  # stored as float32: 48.96, not 48.959999084472656
        lines = [f"{key}: {value}" for key, value in event.items()]
        lines.append("features (Time, V1..V28, Amount): " + ", ".join(f"{v:.4g}" for v in features))
        return [dcc.Link("Open this transaction's page", href=pages.href("tx", event_id)), "\n", "\n".join(lines)]
