"""Pages of one subject, each at its own shareable URL: a transaction (/tx/<event id>), a user
(/user/<id>) and an IP address (/ip/<address>)."""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any
from urllib.parse import quote, unquote

from dash import dcc, html
from dash.dash_table.DataTable import DataTable
from dash.dcc.Graph import Graph

from dash_app import figures
from fraudflow.behaviour.definitions import FEATURES as BEHAVIOUR
from fraudflow.data.columns import FEATURES

KINDS = ("tx", "user", "ip", "device")
_NOUNS = {"user": "User", "ip": "IP address", "device": "Device"}
_OTHERS = {
    "user": "Other users on this user's IP addresses",
    "ip": "Users of this IP address",
    "device": "Users of this device",
}
_MUTED = {"color": "#57606a", "fontSize": "12px"}
_SECTION = {"background": "#f6f8fa", "padding": "10px 14px", "borderRadius": "8px", "marginBottom": "12px"}
_GRAPH = {"flex": "1 1 420px", "minWidth": "min(340px, 100%)", "height": "320px"}
_TABLE_STYLE: dict[str, Any] = {"style_table": {"overflowX": "auto"}, "style_cell": {"fontSize": "13px"}}


def route(path: object) -> tuple[str, str] | None:
    """(kind, value) of a subject page's path, or None for the monitor."""
    if not isinstance(path, str):
        return None
    kind, _, value = path.strip("/").partition("/")
    return (kind, unquote(value)) if kind in KINDS and value else None


def href(kind: str, value: object) -> str:
    return f"/{kind}/{quote(str(value), safe='')}"


def target(query: object) -> str | None:
    """Where a search goes: an event id to its transaction, an IP address to its page, `device:<id>` to a
    device, anything else to a user."""
    if not isinstance(query, str) or not query.strip():
        return None
    text = query.strip()
    if text.lower().startswith("device:") and text[7:].strip():
        return href("device", text[7:].strip())
    try:
        return href("tx", uuid.UUID(text))
    except ValueError:
        pass
    try:
        return href("ip", ipaddress.ip_address(text))
    except ValueError:
        return href("user", text)


def _fields(pairs: list[tuple[str, Any]]) -> html.Table:
    return html.Table(
        [
            html.Tr([html.Th(name, style={"textAlign": "left", "paddingRight": "16px"}), html.Td(value)])
            for name, value in pairs
        ],
        style={"fontSize": "14px"},
    )


def _amount(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _entity_link(kind: str, value: object) -> Any:
    return "-" if value is None else dcc.Link(str(value), href=href(kind, value))


def _against_cuts(proba: float, version: str, model: figures.ServedModel | None) -> str:
    """The probability with the cuts it was decided by, when the dashboard knows that model's card."""
    if model is None or model.version != version:
        return f"{proba:.4f}"
    if not model.cuts:
        return f"{proba:.4f} (decided by expected cost with the amount: see why below)"
    cuts = ", ".join(f"{decision} from {cut:.4g}" for decision, cut in sorted(model.cuts.items(), key=lambda c: c[1]))
    return f"{proba:.4f} ({cuts})"


def transaction(event_id: str, event: dict[str, Any] | None, model: figures.ServedModel | None = None) -> html.Div:
    """`model`: the served model's card, whose cuts are shown when the transaction was scored by it."""
    if event is None:
        return html.Div([html.H3("Transaction"), html.P(f"No stored transaction has the event id {event_id}.")])
    place = ", ".join(str(event[k]) for k in ("city", "region", "country") if event.get(k)) or "-"
    where = "" if event.get("latitude") is None else f" ({event['latitude']:.3f}, {event['longitude']:.3f})"
    features = event.get("features") or []
    return html.Div(
        [
            html.H3(f"Transaction {event['event_id']}"),
            html.Div(
                _fields(
                    [
                        ("Decision", html.B(event["decision"])),
                        ("Decided by", _DECIDED_BY.get(event.get("decided_by") or "", "-")),
                        ("Amount", _amount(event.get("amount"))),
                        ("Fraud probability", _against_cuts(event["fraud_proba"], event["model_version"], model)),
                        ("Anomaly score", f"{event['anomaly_score']:.4f}"),
                        ("Model version", event["model_version"]),
                        ("Transaction time (UTC)", f"{event['timestamp']:%Y-%m-%d %H:%M:%S}"),
                        ("Received by the API (UTC)", f"{event['received_at']:%Y-%m-%d %H:%M:%S.%f}"[:-3]),
                        ("User", _entity_link("user", event["user_id"])),
                        ("IP address", _entity_link("ip", event.get("ip_address"))),
                        ("Device id", _entity_link("device", event.get("device_id"))),
                        ("Place", place + where),
                        ("Source", event["source"]),
                        (
                            "Device",
                            " / ".join(
                                str(event[k]) for k in ("device_type", "os_version", "app_version") if event.get(k)
                            )
                            or "-",
                        ),
                    ]
                ),
                style=_SECTION,
            ),
            html.H4("Why"),
            reasons_section(event),
            html.H4("Behaviour when it was scored"),
            behaviour_section(event),
            html.Details(
                [
                    html.Summary("The 30 model inputs as sent (Time, V1..V28, Amount)"),
                    _fields([(name, f"{value:.6g}") for name, value in zip(FEATURES, features, strict=False)]),
                ]
            ),
        ]
    )


def _feature_value(name: str, value: float | None) -> str:
    if value is None:
        return "unknown"
    if name.startswith("user_amount_") and name not in ("user_amount_to_mean", "user_amount_zscore"):
        return f"{value:,.2f}"
    if name.startswith("user_new_"):
        return "yes" if value else "no"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


_DECIDED_BY = {"allow_list": "an allow list", "deny_list": "a deny list", "rule": "a rule", "model": "the model"}


def reasons_section(event: dict[str, Any]) -> html.Div:
    """What decided, then the model's view with the features that pushed it towards fraud, in words."""
    stored = event.get("reasons")
    if stored is None:
        return html.Div("Not recorded: scored before reasons were kept.", style=_SECTION)
    reasons = json.loads(stored) if isinstance(stored, str) else stored
    items = []
    for reason in reasons:
        item: list[Any] = [reason["text"].split("; mostly ")[0]]
        if reason.get("source") == "rule":
            item.append(html.Span(f" (rule {reason['rule']}, version {reason['version']})", style=_MUTED))
        if contributions := reason.get("contributions"):
            item.append(
                html.Ul(
                    [
                        html.Li([c["text"], html.Span(f" (+{c['contribution']:.2f} log-odds)", style=_MUTED)])
                        for c in contributions
                    ]
                )
            )
        items.append(html.Li(item))
    return html.Div(html.Ol(items, style={"margin": "0", "paddingLeft": "20px"}), style=_SECTION)


def behaviour_section(event: dict[str, Any]) -> html.Div:
    """The behaviour features a transaction was scored with, each with what it means."""
    stored = event.get("behaviour")
    if stored is None:
        return html.Div("Not recorded: scored before behaviour features existed.", style=_SECTION)
    values = json.loads(stored) if isinstance(stored, str) else stored
    rows = [
        html.Tr(
            [
                html.Td(feature.description[:1].upper() + feature.description[1:], style={"paddingRight": "16px"}),
                html.Td(html.B(_feature_value(feature.name, values.get(feature.name)))),
            ]
        )
        for feature in BEHAVIOUR
    ]
    note = (
        [html.P("The feature store did not answer in time: it was scored without them (unknown below).")]
        if event.get("features_degraded")
        else []
    )
    return html.Div([*note, html.Table(rows, style={"fontSize": "14px"})], style=_SECTION)


def _history_table(rows: list[dict[str, Any]]) -> DataTable:
    shown = [
        {
            **row,
            "event_id": str(row["event_id"]),
            "received_at": f"{row['received_at']:%Y-%m-%d %H:%M:%S}",
            "amount": None if row["amount"] is None else round(row["amount"], 2),
            "fraud_proba": round(row["fraud_proba"], 4),
            "link": f"[open]({href('tx', row['event_id'])})",
        }
        for row in rows
    ]
    columns = [
        ("received_at", "Received (UTC)"),
        ("user_id", "User"),
        ("ip_address", "IP"),
        ("country", "Country"),
        ("amount", "Amount"),
        ("fraud_proba", "p(fraud)"),
        ("decision", "Decision"),
    ]
    return _table(
        shown,
        [{"name": label, "id": key} for key, label in columns]
        + [{"name": "Transaction", "id": "link", "presentation": "markdown"}],
    )


def _table(data: list[dict[str, Any]], columns: list[dict[str, str]]) -> DataTable:
    # Rows hold None for missing values, which DataTable shows as blanks but its type hints do not admit.
    options: dict[str, Any] = {"data": data, "columns": columns, "page_size": 25, **_TABLE_STYLE}
    return DataTable(**options)


def entity(
    kind: str, value: str, rows: list[dict[str, Any]], shared: list[dict[str, Any]], graph: Graph.Config
) -> html.Div:
    """`graph` is dcc.Graph's config (figures.graph_config)."""
    noun = _NOUNS[kind]
    if not rows:
        return html.Div([html.H3(f"{noun} {value}"), html.P("No stored transaction.")])
    flagged = sum(row["decision"] != "approve" for row in rows)
    amounts = [row["amount"] for row in rows if row["amount"] is not None]
    others = _OTHERS[kind]
    return html.Div(
        [
            html.H3(f"{noun} {value}"),
            html.Div(
                _fields(
                    [
                        ("Recent transactions", f"{len(rows)} (newest first below)"),
                        ("Flagged among them", f"{flagged}"),
                        ("Total amount", _amount(sum(amounts)) if amounts else "-"),
                        ("Countries", ", ".join(sorted({r["country"] for r in rows if r["country"]})) or "-"),
                    ]
                ),
                style=_SECTION,
            ),
            html.Div(
                [
                    dcc.Graph(id="entity-timeline", figure=figures.timeline(rows), config=graph, style=_GRAPH),
                    dcc.Graph(id="entity-map", figure=figures.trail(rows), config=graph, style=_GRAPH),
                ],
                style={"display": "flex", "flexWrap": "wrap", "gap": "10px"},
            ),
            *([html.H4("Behaviour at its latest transaction"), behaviour_section(rows[0])] if kind == "user" else []),
            _history_table(rows),
            html.H4(others),
            _table(
                [{**r, "user": f"[{r['user_id']}]({href('user', r['user_id'])})"} for r in shared],
                [
                    {"name": "User", "id": "user", "presentation": "markdown"},
                    {"name": "Device" if kind == "device" else "IP", "id": "via"},
                    {"name": "Transactions", "id": "transactions"},
                ],
            )
            if shared
            else html.P("None."),
        ]
    )
