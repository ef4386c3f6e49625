"""The review page (/review): the queue, "next case", the case with its reasons and the user's history,
and the analyst's decision, which labels the case's transactions (fraudflow/cases.py).

Keyboard first: every action has an access key (Alt+N next case, Alt+F fraud, Alt+L legitimate, Alt+U
unsure, Alt+R release, Alt+S save the note; Alt+Shift on Firefox), the note field takes focus with Alt+T.
The analyst is the dashboard user logged in, and is named in the case's audit trail and on its labels.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.dash_table.DataTable import DataTable
from dash.dcc.Graph import Graph

from dash_app import pages, queries
from dash_app.database import Database, DatabaseUnavailable
from dash_app.decisions import analyst
from fraudflow import cases
from fraudflow.decisions import store

PATH = "/review"
_ROW = {"display": "flex", "flexWrap": "wrap", "gap": "8px", "alignItems": "center", "margin": "6px 0"}
_OK = {"color": "#1a7f37"}
_PROBLEM = {"color": "#b10f14"}
_OUTCOMES = {
    "case-fraud": cases.Outcome.FRAUD,
    "case-legitimate": cases.Outcome.LEGITIMATE,
    "case-unsure": cases.Outcome.UNSURE,
}
_TABLE: dict[str, Any] = {
    "style_table": {"overflowX": "auto"},
    "style_cell": {"fontSize": "13px", "padding": "4px 8px", "textAlign": "left", "whiteSpace": "normal"},
}
WHY_SHOWN = 5  # the newest transactions whose reasons are spelt out, model contributions included
ENTITY_KINDS = {"user": "user_id", "device": "device_id", "ip": "ip_address"}


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Review queue"),
            html.Div(id="queue-summary"),
            html.Div(
                [
                    html.Button("Next case", id="case-next", accessKey="n", title="Alt+N"),
                    dcc.RadioItems(
                        id="case-order",
                        options=[
                            {"label": " oldest first ", "value": cases.Order.OLDEST.value},
                            {"label": " highest expected loss first ", "value": cases.Order.EXPECTED_LOSS.value},
                        ],
                        value=cases.Order.OLDEST.value,
                        inline=True,
                    ),
                ],
                style=_ROW,
            ),
            html.Div(id="case-message"),
            dcc.Store(id="case-id"),
            html.Div(
                [
                    dcc.Textarea(
                        id="case-note",
                        placeholder="note (Alt+T): what you checked, what you found",
                        accessKey="t",
                        style={"width": "100%", "height": "48px"},
                    ),
                    html.Div(
                        [
                            html.Button(
                                "Fraud", id="case-fraud", accessKey="f", title="Alt+F: labels every transaction fraud"
                            ),
                            html.Button("Legitimate", id="case-legitimate", accessKey="l", title="Alt+L"),
                            html.Button(
                                "Unsure", id="case-unsure", accessKey="u", title="Alt+U: closes without labels"
                            ),
                            html.Button("Release", id="case-release", accessKey="r", title="Alt+R: back to the queue"),
                            html.Button("Save note", id="case-note-save", accessKey="s", title="Alt+S: keep it open"),
                            html.Span("then add its", style={"marginLeft": "16px"}),
                            dcc.RadioItems(id="case-entity", options=list(ENTITY_KINDS), value="device", inline=True),
                            html.Span("to list"),
                            dcc.Input(id="case-list", list="case-lists", placeholder="a list"),
                            html.Datalist(id="case-lists"),
                            html.Button("Add", id="case-list-add"),
                        ],
                        style=_ROW,
                    ),
                ],
                id="case-actions",
                style={"display": "none"},
            ),
            dcc.Loading(html.Div(id="case-view")),
        ]
    )


def _case_id(value: object) -> int | None:
    """A case id from the browser, or None (any JSON can arrive)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63 else None


def _order(value: object) -> cases.Order:
    return cases.Order(value) if value in {o.value for o in cases.Order} else cases.Order.OLDEST


def _age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    minutes = int((datetime.now(UTC) - moment).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _summary(q: cases.Queue) -> html.P:
    return html.P(
        f"{q.open:,} open cases (the oldest waiting {_age(q.oldest_open_at)}), {q.in_review:,} in review; "
        f"{q.amount_at_stake:,.2f} at stake, expected loss {q.expected_loss:,.2f}."
    )


def _why(row: dict[str, Any]) -> str:
    """The deciding reason, in words (the first of the row's reasons)."""
    stored = row.get("reasons")
    reasons = orjson.loads(stored) if isinstance(stored, str) else stored or []
    return str(reasons[0]["text"]).split("; mostly ")[0] if reasons else "-"


def _table(id_: str, rows: Any, columns: list[str], links: tuple[str, ...] = ()) -> DataTable:
    shown: Any = [{"name": n, "id": n, **({"presentation": "markdown"} if n in links else {})} for n in columns]
    return DataTable(id=id_, data=rows, columns=shown, **_TABLE)


def _case_view(
    found: dict[str, Any], history: list[dict[str, Any]], shared: list[dict[str, Any]], graph: Graph.Config
) -> html.Div:
    c = found["case"]
    rows = [
        {
            "event": f"[{str(t['event_id'])[:8]}]({pages.href('tx', str(t['event_id']))})",
            "time": f"{t['timestamp']:%Y-%m-%d %H:%M:%S}",
            "amount": f"{t['amount']:,.2f}" if t["amount"] is not None else "-",
            "p(fraud)": f"{t['fraud_proba']:.3f}",
            "decided by": t["decided_by"] or "-",
            "why": _why(t),
            "device": t["device_id"] or "-",
            "ip": t["ip_address"] or "-",
            "label": t["label"] or "-",
        }
        for t in found["transactions"]
    ]
    until = c["claim_expires_at"]
    return html.Div(
        [
            html.H4(
                f"Case {c['id']}: user {c['user_id']}, {c['transactions']} transactions, {c['amount']:,.2f} at "
                f"stake, expected loss {c['expected_loss']:,.2f}",
                id="case-title",
            ),
            html.P(
                f"Opened {c['opened_at']:%Y-%m-%d %H:%M} UTC; {c['state'].replace('_', ' ')}"
                + (f" by {c['claimed_by']} until {until:%H:%M} UTC" if until else "")
            ),
            _table(
                "case-transactions",
                rows,
                ["event", "time", "amount", "p(fraud)", "decided by", "why", "device", "ip", "label"],
                links=("event",),
            ),
            *(
                part
                for t in found["transactions"][:WHY_SHOWN]
                for part in (html.H5(f"Why {str(t['event_id'])[:8]} was flagged"), pages.reasons_section(t))
            ),
            html.H4("Other users of its devices"),
            _table("case-device-users", shared, ["user_id", "via", "transactions"]) if shared else html.P("None."),
            pages.entity("user", c["user_id"], history, [], graph),
        ]
    )


async def _device_users(conn: asyncpg.Connection, case_id: int, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT other.user_id, other.device_id AS via, count(*) AS transactions
           FROM (SELECT DISTINCT p.device_id FROM case_events e JOIN fraud_predictions p USING (event_id)
                 WHERE e.case_id = $1 AND p.device_id IS NOT NULL) AS mine
           JOIN fraud_predictions other ON other.device_id = mine.device_id AND other.user_id <> $2
           GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 20""",
        case_id,
        user_id,
    )
    return [dict(r) for r in rows]


def register(app: Dash, db: Database, graph: Graph.Config) -> None:
    @app.callback(
        [Output("queue-summary", "children"), Output("case-lists", "children")],
        [Input("url", "pathname"), Input("case-message", "children")],
    )
    def load(path: object, _message: object) -> Any:
        if path != PATH:
            return no_update, no_update
        try:
            found = db.gather({"queue": (cases.queue, ()), "lists": (store.get_lists, ())})
        except DatabaseUnavailable as error:
            return html.P(f"Database unavailable: {error}.", style=_PROBLEM), []
        return _summary(found["queue"]), [html.Option(value=row["name"]) for row in found["lists"]]

    @app.callback(
        [Output("case-id", "data"), Output("case-message", "children")],
        [
            Input("case-next", "n_clicks"),
            Input("case-fraud", "n_clicks"),
            Input("case-legitimate", "n_clicks"),
            Input("case-unsure", "n_clicks"),
            Input("case-release", "n_clicks"),
            Input("case-note-save", "n_clicks"),
            Input("case-list-add", "n_clicks"),
        ],
        [
            State("case-id", "data"),
            State("case-order", "value"),
            State("case-note", "value"),
            State("case-entity", "value"),
            State("case-list", "value"),
        ],
        prevent_initial_call=True,
    )
    def act(*args: object) -> Any:
        given, order, note, kind, list_name = args[7:]
        case_id = _case_id(given)
        who = analyst()
        trigger = ctx.triggered_id
        try:
            if trigger == "case-next":
                claimed = db.run(cases.claim_next, who, _order(order))
                if claimed is None:
                    return None, html.Div("No case is waiting.", style=_OK)
                return claimed["id"], html.Div(
                    f"Case {claimed['id']} is yours until {claimed['claim_expires_at']:%H:%M} UTC.", style=_OK
                )
            if case_id is None:
                return no_update, html.Div("Take a case first (Next case).", style=_PROBLEM)
            if trigger in _OUTCOMES:
                outcome = _OUTCOMES[str(trigger)]
                labelled = db.run(cases.close, case_id, who, outcome, str(note or "") or None)
                return None, html.Div(
                    f"Case {case_id} closed as {outcome.value} by {who}; {labelled} transactions labelled.", style=_OK
                )
            if trigger == "case-release":
                db.run(cases.release, case_id, who)
                return None, html.Div(f"Case {case_id} released to the queue.", style=_OK)
            if trigger == "case-note-save":
                if not note or not str(note).strip():
                    return no_update, html.Div("Type a note first.", style=_PROBLEM)
                db.run(cases.add_note, case_id, who, str(note))
                return no_update, html.Div(f"Note saved on case {case_id} by {who}.", style=_OK)
            value = db.run(_entity_value, case_id, ENTITY_KINDS.get(str(kind), "device_id"))
            if not list_name or value is None:
                return no_update, html.Div("Pick a list; the case must have that value.", style=_PROBLEM)
            db.run(store.add_entries, str(list_name), [(value, f"case {case_id}", None)], who)
            return no_update, html.Div(f"{value} added to {list_name} by {who}.", style=_OK)
        except (cases.CaseError, store.PolicyError, DatabaseUnavailable, asyncpg.PostgresError) as error:
            return no_update, html.Div(f"Refused: {error}", style=_PROBLEM)

    @app.callback(
        [Output("case-view", "children"), Output("case-actions", "style")],
        Input("case-id", "data"),
        prevent_initial_call=True,
    )
    def show(given: object) -> Any:
        case_id = _case_id(given)
        if case_id is None:
            return [], {"display": "none"}
        try:
            found = db.run(cases.case, case_id)
            if found is None:
                return html.P(f"No case {case_id}."), {"display": "none"}
            user = found["case"]["user_id"]
            more = db.gather(
                {
                    "history": (queries.history, ("user", user)),
                    "devices": (_device_users, (case_id, user)),
                }
            )
        except DatabaseUnavailable as error:
            return html.P(f"Database unavailable: {error}.", style=_PROBLEM), no_update
        return _case_view(found, more["history"], more["devices"], graph), {}


async def _entity_value(conn: asyncpg.Connection, case_id: int, column: str) -> str | None:
    """The case's newest value of a user, device or IP column (whitelisted)."""
    if column not in ENTITY_KINDS.values():
        return None
    value = await conn.fetchval(
        f"""SELECT p.{column} FROM case_events e JOIN fraud_predictions p USING (event_id)
            WHERE e.case_id = $1 AND p.{column} IS NOT NULL ORDER BY p."timestamp" DESC LIMIT 1""",
        case_id,
    )
    return None if value is None else str(value)
