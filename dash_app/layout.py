"""The page: controls, KPI cards, charts, the lease panel, and the flagged-transactions table."""

from __future__ import annotations

from dash import dcc, html
from dash.dash_table.DataTable import DataTable

from dash_app import decisions, models_page, review
from dash_app.figures import graph_config
from dash_app.queries import FLAGGED_COUNT_LIMIT

RANGES = {
    "15m": "Last 15 minutes",
    "1h": "Last hour",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "custom": "Custom range",
}
KPIS = [
    ("kpi-transactions", "Transactions"),
    ("kpi-rate", "Events/s (range average)"),
    ("kpi-flagged", "Flagged (review or decline)"),
    ("kpi-flag-rate", "Flagged share"),
    ("kpi-confirmed", "Confirmed fraud (labels): flagged"),
    ("kpi-review-decline", "Review / decline"),
    ("kpi-mean-proba", "Mean p(fraud)"),
    ("kpi-latency", "Latency p50 / p95"),
    ("kpi-health", "Pipeline health"),
    ("kpi-models", "Model version(s)"),
]
# The charts, in page order; callbacks.refresh fills them in this order.
GRAPHS = (
    "g-volume",
    "g-latency",
    "g-proba",
    "g-anomaly",
    "g-rates",
    "g-map",
    "g-country",
    "g-city",
    "g-source",
    "g-device",
)
FLAGGED_COLUMNS = [
    ("received_at", "Received (UTC)"),
    ("user_id", "User"),
    ("country", "Country"),
    ("source", "Source"),
    ("amount", "Amount"),
    ("fraud_proba", "p(fraud)"),
    ("anomaly_score", "Anomaly"),
    ("decision", "Decision"),
]
PAGE_SIZE = 15

_CARD = {
    "padding": "10px 14px",
    "border": "1px solid #d0d7de",
    "borderRadius": "8px",
    "minWidth": "140px",
    "flex": "1",
    "background": "#fbfcfd",
}
_ROW = {"display": "flex", "gap": "10px", "flexWrap": "wrap", "marginBottom": "12px"}
_PLAIN = {"color": "inherit", "textDecoration": "none"}
_GRAPH = {"flex": "1 1 480px", "minWidth": "min(380px, 100%)", "height": "340px"}


def _dropdown(id_: str, placeholder: str) -> dcc.Dropdown:
    return dcc.Dropdown(
        id=id_,
        multi=True,
        placeholder=placeholder,
        persistence=True,
        persistence_type="local",
        style={"minWidth": "180px", "flex": "1"},
    )


def _time_input(id_: str, bound: str) -> dcc.Input:
    return dcc.Input(
        id=id_,
        type="text",
        placeholder=f"{bound} YYYY-MM-DD HH:MM (UTC)",
        style={"width": "230px"},
        debounce=True,
        persistence=True,
        persistence_type="local",
    )


def _small_table(id_: str, columns: tuple[tuple[str, str], ...]) -> DataTable:
    """A table a callback fills; it scrolls inside itself on a phone."""
    return DataTable(
        id=id_,
        columns=[{"name": name, "id": key} for key, name in columns],
        style_table={"overflowX": "auto"},
        style_cell={"fontSize": "13px", "padding": "4px 8px"},
    )


def _card(id_: str, label: str) -> html.Div:
    return html.Div(
        [
            html.Div(label, style={"fontSize": "12px", "color": "#57606a"}),
            html.Div("…", id=id_, style={"fontSize": "22px", "fontWeight": "600"}),  # until the first refresh
        ],
        style=_CARD,
    )


def layout(refresh_s: float, topojson_url: str) -> html.Div:
    controls = html.Div(
        [
            dcc.Dropdown(
                id="range",
                options=[{"label": v, "value": k} for k, v in RANGES.items()],
                value="1h",
                clearable=False,
                persistence=True,
                persistence_type="local",
                style={"width": "200px"},
            ),
            _time_input("custom-start", "from"),
            _time_input("custom-end", "to"),
            dcc.Checklist(
                id="pause",
                options=[{"label": " pause auto-refresh", "value": "paused"}],
                value=[],
                persistence=True,
                persistence_type="local",
            ),
            html.Span("loading the figures…", id="refreshed", style={"color": "#57606a", "fontSize": "12px"}),
        ],
        style={**_ROW, "alignItems": "center"},
    )
    filters = html.Div(
        [
            _dropdown("f-country", "Country"),
            _dropdown("f-source", "Source"),
            _dropdown("f-device", "Device type"),
            dcc.Dropdown(
                id="f-decision",
                multi=True,
                placeholder="Decision",
                persistence=True,
                persistence_type="local",
                options=["approve", "review", "decline"],
                style={"minWidth": "180px", "flex": "1"},
            ),
            html.Label(
                [
                    "Min p(fraud) ",
                    dcc.Input(
                        id="f-min-proba",
                        type="number",
                        min=0,
                        max=1,
                        step=0.01,
                        value=0,
                        debounce=True,
                        persistence=True,
                        persistence_type="local",
                        style={"width": "80px"},
                    ),
                ]
            ),
        ],
        style={**_ROW, "alignItems": "center"},
    )
    graphs = html.Div(
        [dcc.Graph(id=g, style=_GRAPH, config=graph_config(topojson_url)) for g in GRAPHS],
        style=_ROW,
    )
    flagged = DataTable(
        id="flagged",
        columns=[{"name": label, "id": key} for key, label in FLAGGED_COLUMNS],
        page_current=0,
        page_size=PAGE_SIZE,
        page_action="custom",
        sort_action="custom",
        sort_mode="single",
        sort_by=[{"column_id": "received_at", "direction": "desc"}],
        row_selectable=False,
        style_table={"overflowX": "auto"},  # scrolls inside itself on a phone; the page does not
        style_cell={"fontSize": "13px", "padding": "4px 8px"},
        style_header={"fontWeight": "600"},
        style_data_conditional=[{"if": {"filter_query": '{decision} = "decline"'}, "color": "#b10f14"}],
    )
    leases = _small_table(
        "leases",
        (
            ("shard_id", "Shard"),
            ("owner", "Owner"),
            ("lag_ms", "Lag (ms)"),
            ("checkpoint_age_s", "Checkpoint age (s)"),
            ("renewed_s_ago", "Renewed (s ago)"),
        ),
    )
    monitor = html.Div(
        [
            controls,
            filters,
            html.Div(id="banner", style={"display": "none"}),
            html.Div([html.Div([_card(i, label) for i, label in KPIS], style=_ROW), graphs], id="figures"),
            html.H4(f"Latest flagged transactions (review or decline; pages reach the first {FLAGGED_COUNT_LIMIT:,})"),
            html.Div(
                [
                    html.Button(
                        "Download CSV", id="export", title="Every flagged row of this range, filters and order"
                    ),
                    dcc.Download(id="download"),
                ],
                style={"margin": "6px 0"},
            ),
            flagged,
            html.Pre(
                id="detail",
                style={"whiteSpace": "pre-wrap", "background": "#f6f8fa", "padding": "8px", "fontSize": "12px"},
            ),
            html.H4("Model versions scoring in this range"),
            _small_table(
                "models",
                (
                    ("model_version", "Version"),
                    ("transactions", "Transactions"),
                    ("flagged", "Flagged"),
                    ("declined", "Declined"),
                    ("mean_proba", "Mean p(fraud)"),
                ),
            ),
            html.H4("Consumer shards"),
            leases,
        ],
        id="monitor",
    )
    header = html.Div(
        [
            html.H2(dcc.Link("fraudflow · live fraud monitor", href="/", style=_PLAIN), style={"margin": "4px 0"}),
            html.Div(
                [
                    dcc.Link("Review queue", href=review.PATH),
                    dcc.Link("Rules and lists", href=decisions.PATH),
                    dcc.Link("Models", href=models_page.PATH),
                ],
                style={"display": "flex", "gap": "16px"},
            ),
            dcc.Input(
                id="search",
                type="search",
                placeholder="event id, user or IP, then Enter",
                debounce=True,
                style={"minWidth": "min(320px, 100%)"},
            ),
        ],
        style={**_ROW, "alignItems": "center", "justifyContent": "space-between"},
    )
    return html.Div(
        [
            dcc.Location(id="url", refresh=False),
            header,
            html.Div(id="subject"),  # a transaction's, a user's or an IP's page, at its own URL
            html.Div(decisions.layout(), id="decisions", style={"display": "none"}),  # /rules
            html.Div(models_page.layout(), id="models-page", style={"display": "none"}),  # /models
            html.Div(review.layout(), id="review-page", style={"display": "none"}),  # /review
            monitor,
            dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
            dcc.Store(id="selected-event"),
            dcc.Store(id="last-refresh"),
        ],
        style={"fontFamily": "system-ui, sans-serif", "padding": "12px 20px", "maxWidth": "1600px", "margin": "auto"},
    )
