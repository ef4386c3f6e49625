"""The rules and lists page (/rules): what decides besides the model, changed by the analyst logged in.

Changes go through `fraudflow.decisions.store` like the CLI's and the API's (checked, versioned, audited
under the analyst's name, applied by every API process when they commit). A backtest runs a candidate
rule over the stored transactions before anyone enables it.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.dash_table.DataTable import DataTable
from flask import request

from dash_app.database import Database, DatabaseUnavailable
from fraudflow.decisions import store
from fraudflow.decisions.backtest import backtest
from fraudflow.decisions.conditions import ConditionError

PATH = "/rules"
_ROW = {"display": "flex", "flexWrap": "wrap", "gap": "8px", "alignItems": "center", "margin": "6px 0"}
_OK = {"color": "#1a7f37"}
_PROBLEM = {"color": "#b10f14"}
_TABLE: dict[str, Any] = {
    "style_table": {"overflowX": "auto"},
    "style_cell": {"fontSize": "13px", "padding": "4px 8px", "textAlign": "left", "whiteSpace": "normal"},
}
RULE_COLUMNS = (
    ("name", "Rule"),
    ("action", "Action"),
    ("enabled", "Enabled"),
    ("version", "Version"),
    ("expression", "Condition"),
    ("description", "Description"),
    ("author", "Last changed by"),
    ("updated_at", "At (UTC)"),
)
LIST_COLUMNS = (("name", "List"), ("kind", "Holds"), ("action", "Action"), ("entries", "Entries"), ("description", ""))


def _table(id_: str, columns: tuple[tuple[str, str], ...]) -> DataTable:
    return DataTable(id=id_, columns=[{"name": name, "id": key} for key, name in columns], **_TABLE)


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Rules"),
            html.P(
                "Allow lists, then deny lists, then rules (decline, review, allow), then the model decide. "
                "A condition is CEL over the transaction, its scores, its behaviour features and `lists` "
                '(e.g. user_count_1h >= 10.0 && amount < 2.0, or "watched" in lists); docs/decisions.md.'
            ),
            _table("rules-table", RULE_COLUMNS),
            html.Div(
                [
                    dcc.Input(id="rule-name", placeholder="name, e.g. card_testing", debounce=False),
                    dcc.RadioItems(
                        id="rule-action", options=["review", "decline", "allow"], value="review", inline=True
                    ),
                    dcc.Input(id="rule-description", placeholder="why, in words", style={"flex": "1 1 240px"}),
                ],
                style=_ROW,
            ),
            dcc.Textarea(
                id="rule-when",
                placeholder="condition, e.g. user_count_1h >= 10.0 && amount < 2.0",
                style={"width": "100%", "height": "56px", "fontFamily": "monospace"},
            ),
            html.Div(
                [
                    html.Button("Add rule", id="rule-add"),
                    html.Button("Backtest it", id="rule-backtest", title="Over the stored transactions"),
                    dcc.Input(id="backtest-days", type="number", min=1, max=90, value=7, style={"width": "70px"}),
                    html.Span("days back"),
                    dcc.Input(id="rule-pick", list="rule-names", placeholder="a rule"),
                    html.Datalist(id="rule-names"),
                    html.Button("Enable", id="rule-enable"),
                    html.Button("Disable", id="rule-disable"),
                ],
                style=_ROW,
            ),
            html.Div(id="rule-message"),
            dcc.Loading(html.Div(id="backtest-result")),
            html.H3("Lists"),
            _table("lists-table", LIST_COLUMNS),
            html.Div(
                [
                    dcc.Input(id="list-pick", list="list-names", placeholder="a list"),
                    html.Datalist(id="list-names"),
                    dcc.Input(id="list-value", placeholder="user, device, IP or CIDR, country"),
                    dcc.Input(id="list-reason", placeholder="reason", style={"flex": "1 1 200px"}),
                    html.Button("Add entry", id="list-add"),
                    html.Button("Remove entry", id="list-remove"),
                ],
                style=_ROW,
            ),
            html.Div(id="list-message"),
        ]
    )


def analyst() -> str:
    """Who is changing something: the dashboard user logged in (basic auth), or a local user."""
    auth = request.authorization
    return auth.username if auth is not None and auth.username else "dashboard (loopback)"


def _problem(error: Exception) -> html.Div:
    if isinstance(error, asyncpg.InsufficientPrivilegeError):
        text = "this dashboard's database user may not change rules or lists (grant it the role fraudflow_policy)"
    elif isinstance(error, DatabaseUnavailable):
        text = f"database unavailable: {error}"
    else:
        text = str(error)
    return html.Div(f"Refused: {text}", style=_PROBLEM)


_REFUSED = (ConditionError, store.PolicyError, DatabaseUnavailable, asyncpg.PostgresError)


def _backtest_result(result: dict[str, Any]) -> html.Div:
    changed = ", ".join(f"{k}: {v}" for k, v in result["would_change"].items()) or "none"
    return html.Div(
        [
            html.P(
                f"{result['matched']:,} of {result['transactions']:,} stored transactions match "
                f"({result['unevaluated']:,} could not be evaluated: a field it reads was unknown). "
                f"Decisions it would change: {changed}."
            ),
            DataTable(
                data=result["by_day"],
                columns=[{"name": n, "id": n} for n in ("day", "transactions", "matched")],
                **_TABLE,
            ),
        ]
    )


def register(app: Dash, db: Database) -> None:
    @app.callback(
        [
            Output("rules-table", "data"),
            Output("rule-names", "children"),
            Output("lists-table", "data"),
            Output("list-names", "children"),
        ],
        [Input("url", "pathname"), Input("rule-message", "children"), Input("list-message", "children")],
    )
    def load(path: object, *_changes: object) -> Any:
        if path != PATH:
            return no_update, no_update, no_update, no_update
        try:
            found = db.gather({"rules": (store.get_rules, ()), "lists": (store.get_lists, ())})
        except DatabaseUnavailable:
            return [], [], [], []
        rules = [
            {**r.as_dict(), "enabled": "yes" if r.enabled else "no", "updated_at": f"{r.updated_at:%Y-%m-%d %H:%M}"}
            for r in found["rules"]
        ]
        lists = [{k: v for k, v in row.items() if k != "created_at"} for row in found["lists"]]
        names = [html.Option(value=r["name"]) for r in rules]
        return rules, names, lists, [html.Option(value=row["name"]) for row in lists]

    @app.callback(
        Output("rule-message", "children"),
        [Input("rule-add", "n_clicks"), Input("rule-enable", "n_clicks"), Input("rule-disable", "n_clicks")],
        [
            State("rule-name", "value"),
            State("rule-when", "value"),
            State("rule-action", "value"),
            State("rule-description", "value"),
            State("rule-pick", "value"),
        ],
        prevent_initial_call=True,
    )
    def change_rule(
        _add: object,
        _enable: object,
        _disable: object,
        name: object,
        when: object,
        action: object,
        description: object,
        picked: object,
    ) -> Any:
        who = analyst()
        try:
            if ctx.triggered_id == "rule-add":
                rule = db.run(
                    store.add_rule, str(name or ""), str(when or ""), str(action), str(description or ""), who
                )
                return html.Div(f"Rule {rule.name} added and enabled (version 1) by {who}.", style=_OK)
            if not picked:
                return html.Div("Pick a rule first.", style=_PROBLEM)
            enable = ctx.triggered_id == "rule-enable"
            rule = db.run(functools.partial(store.update_rule, enabled=enable), str(picked), who)
            return html.Div(f"Rule {rule.name} {'enabled' if enable else 'disabled'} by {who}.", style=_OK)
        except _REFUSED as error:
            return _problem(error)

    @app.callback(
        Output("backtest-result", "children"),
        Input("rule-backtest", "n_clicks"),
        [State("rule-when", "value"), State("rule-action", "value"), State("backtest-days", "value")],
        prevent_initial_call=True,
    )
    def run_backtest(_clicks: object, when: object, action: object, days: object) -> Any:
        until = datetime.now(UTC)
        since = until - timedelta(days=int(days) if isinstance(days, int | float) and 1 <= days <= 90 else 7)
        try:
            return _backtest_result(db.run(backtest, str(when or ""), str(action), since, until))
        except _REFUSED as error:
            return _problem(error)

    @app.callback(
        Output("list-message", "children"),
        [Input("list-add", "n_clicks"), Input("list-remove", "n_clicks")],
        [State("list-pick", "value"), State("list-value", "value"), State("list-reason", "value")],
        prevent_initial_call=True,
    )
    def change_list(_add: object, _remove: object, name: object, value: object, reason: object) -> Any:
        if not name or not value:
            return html.Div("Pick a list and give a value.", style=_PROBLEM)
        who = analyst()
        try:
            if ctx.triggered_id == "list-add":
                db.run(store.add_entries, str(name), [(str(value), str(reason or "") or None, None)], who)
                return html.Div(f"{value} added to {name} by {who}.", style=_OK)
            db.run(store.remove_entry, str(name), str(value), who)
            return html.Div(f"{value} removed from {name} by {who}.", style=_OK)
        except _REFUSED as error:
            return _problem(error)
