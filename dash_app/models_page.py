"""The models page (/models): the champion against its challenger on the same live transactions, and the
drift watch's hourly series (docs/models.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dash import Dash, Input, Output, dcc, html, no_update
from dash.dash_table.DataTable import DataTable

from dash_app import figures
from dash_app.database import Database, DatabaseUnavailable
from dash_app.models_queries import PROBABILITY_BINS, challenge, drift
from fraudflow.drift import ACT, WATCH

PATH = "/models"
DECISIONS = ("approve", "review", "decline")
AGREEMENT_COLUMNS = (("champion", ""), *((d, f"challenger: {d}") for d in DECISIONS))
_TABLE: dict[str, Any] = {"style_cell": {"fontSize": "13px", "padding": "4px 8px", "textAlign": "right"}}


def layout() -> html.Div:
    return html.Div(
        [
            html.H3("Champion and challenger"),
            html.Div(
                [
                    html.Span("Over the last "),
                    dcc.RadioItems(
                        id="models-days",
                        options=[{"label": f" {d} d ", "value": d} for d in (1, 7, 30)],
                        value=7,
                        inline=True,
                    ),
                ],
                style={"display": "flex", "gap": "8px", "alignItems": "center"},
            ),
            dcc.Loading(html.Div(id="challenge")),
            html.H3("Drift"),
            html.P(
                f"Population stability (PSI) of the score and of each model input against the training "
                f"reference, every hour: above {WATCH} watch, above {ACT} act (docs/operations.md has the alert)."
            ),
            dcc.Graph(id="drift-psi"),
            dcc.Graph(id="drift-shares"),
        ]
    )


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _challenge_view(found: dict[str, Any] | None) -> html.Div:
    if found is None:
        return html.Div(
            "No challenger has scored in this range: `fraudflow models challenge VERSION`, then "
            "POST /admin/reload-models on each API process."
        )
    champion, challenger = found["champion"], found["challenger"]
    cells = {(r["champion_decision"], r["challenger_decision"]): int(r["n"]) for r in found["agreement"]}
    total = sum(cells.values())
    agree = sum(cells.get((d, d), 0) for d in DECISIONS)
    matrix: Any = [  # DataTable's stubs want dicts keyed by str | float | int
        {"champion": f"champion: {mine}", **{theirs: f"{cells.get((mine, theirs), 0):,}" for theirs in DECISIONS}}
        for mine in DECISIONS
    ]
    labels = found["labels"]
    frauds = int(labels.get("frauds") or 0)
    quality: Any = [
        {
            "model": f"{role} {version}",
            "flagged, labelled": f"{int(labels.get(f'{role}_flagged') or 0):,}",
            "precision": _percent(int(labels.get(f"{role}_caught") or 0), int(labels.get(f"{role}_flagged") or 0)),
            "recall": _percent(int(labels.get(f"{role}_caught") or 0), frauds),
        }
        for role, version in (("champion", champion), ("challenger", challenger))
    ]
    return html.Div(
        [
            html.P(
                f"Champion {champion} decides; challenger {challenger} scored the same {total:,} transactions in "
                f"shadow. They agree on {_percent(agree, total)} of decisions (model decisions, before rules)."
            ),
            DataTable(
                id="agreement",
                data=matrix,
                columns=[{"name": name, "id": key} for key, name in AGREEMENT_COLUMNS],
                **_TABLE,
            ),
            html.P(
                f"Against the labels known ({int(labels.get('labelled') or 0):,} labelled, {frauds:,} fraud): "
                "flagged is review or decline; precision is the share of the labelled flagged that were fraud, "
                "recall the share of the frauds flagged."
            ),
            DataTable(
                id="challenge-quality",
                data=quality,
                columns=[{"name": n, "id": n} for n in ("model", "flagged, labelled", "precision", "recall")],
                **_TABLE,
            ),
            dcc.Graph(
                id="challenge-scores",
                figure=figures.score_distributions(
                    found["bins"],
                    {"champion": f"champion {champion}", "challenger": f"challenger {challenger}"},
                    PROBABILITY_BINS,
                ),
            ),
        ]
    )


def register(app: Dash, db: Database) -> None:
    @app.callback(
        [Output("challenge", "children"), Output("drift-psi", "figure"), Output("drift-shares", "figure")],
        [Input("url", "pathname"), Input("models-days", "value")],
    )
    def load(path: object, days: object) -> Any:
        if path != PATH:
            return no_update, no_update, no_update
        since = datetime.now(UTC) - timedelta(days=days if isinstance(days, int) and 1 <= days <= 90 else 7)
        try:
            found = db.gather({"challenge": (challenge, (since,)), "drift": (drift, (since,))})
        except DatabaseUnavailable as error:
            return html.Div(f"Database unavailable: {error}."), no_update, no_update
        reports = found["drift"]
        return (
            _challenge_view(found["challenge"]),
            figures.drift_series(reports, WATCH, ACT),
            figures.hourly_shares(reports),
        )
