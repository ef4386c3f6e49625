"""Plotly figures from query results: pure functions, one per panel, with units on every axis."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from dash.dcc.Graph import Graph

# A risk scale readable on light and dark backgrounds and by colour-blind readers (blue -> amber -> red).
RISK_SCALE = [[0.0, "#2c7bb6"], [0.5, "#fdae61"], [1.0, "#d7191c"]]
DECISION_COLOURS = {"approve": "#2c7bb6", "review": "#fdae61", "decline": "#d7191c"}
# Every figure's template, set once: assigning a template to a figure costs 25 to 30 ms (it is validated whole).
pio.templates.default = "plotly_white"
_LAYOUT: dict[str, Any] = {
    # Room under the x axis title for the legend, so neither covers the other.
    "margin": {"l": 50, "r": 20, "t": 40, "b": 80},
    "font": {"size": 12},
    "legend": {"orientation": "h", "y": -0.35, "yanchor": "top"},
    "title": {"x": 0.01, "xanchor": "left"},
}


@dataclass(frozen=True)
class ServedModel:
    """The model card of the set the API serves: its version, decision cuts on p(fraud), and the shares of
    transactions its test split flagged (review or decline) and declined."""

    version: str
    cuts: dict[str, float]
    expected: dict[str, float]


def _count_axis(title: str, largest: float) -> dict[str, Any]:
    """Counts: from zero, whole numbers (a tick per unit when there are few, or they would repeat)."""
    return {"title": title, "rangemode": "tozero", "tickformat": ",d", **({"dtick": 1} if largest <= 5 else {})}


NO_DATA = "No transactions in this range"


def _figure(title: str, **layout: Any) -> go.Figure:
    # One validated construction: update_layout twice costs five times as much, and a refresh draws ten.
    return go.Figure(layout={**_LAYOUT, "title": {**_LAYOUT["title"], "text": title}, **layout})


def _empty(figure: go.Figure) -> go.Figure:
    """Say there is nothing to draw instead of drawing empty axes."""
    figure.update_layout(
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": NO_DATA, "showarrow": False, "font": {"size": 14, "color": "#57606a"}}],
    )
    return figure


def volume(rows: list[dict[str, Any]], bucket_label: str, window: tuple[datetime, datetime]) -> go.Figure:
    figure = _figure(
        f"Transactions per {bucket_label}",
        yaxis=_count_axis("transactions / bucket", max((r["transactions"] for r in rows), default=0)),
        xaxis={"title": "time (UTC)", "range": list(window)},
        yaxis2={
            **_count_axis("declined / bucket", max((r["frauds"] for r in rows), default=0)),
            "overlaying": "y",
            "side": "right",
        },
    )
    if not rows:
        return _empty(figure)
    figure.add_bar(
        x=[r["bucket"] for r in rows], y=[r["transactions"] for r in rows], name="transactions", marker_color="#9ecae1"
    )
    figure.add_scatter(
        x=[r["bucket"] for r in rows],
        y=[r["frauds"] for r in rows],
        name="declined (right axis)",
        yaxis="y2",
        mode="lines+markers",
        line_color="#d7191c",
    )
    return figure


def latency(rows: list[dict[str, Any]], window: tuple[datetime, datetime]) -> go.Figure:
    figure = _figure(
        "End-to-end latency (API receive -> row stored)",
        yaxis={"title": "seconds", "rangemode": "tozero"},
        xaxis={"title": "time (UTC)", "range": list(window)},
    )
    if not rows:
        return _empty(figure)
    for key, name in (("latency_p50_s", "p50"), ("latency_p95_s", "p95")):
        figure.add_scatter(x=[r["bucket"] for r in rows], y=[r[key] for r in rows], name=name, mode="lines")
    return figure


def decision_rates(
    rows: list[dict[str, Any]], window: tuple[datetime, datetime], model: ServedModel | None
) -> go.Figure:
    """Shares flagged and declined per bucket, against what the served model's card expects."""
    figure = _figure(
        "Decision rates against the model card",
        yaxis={"title": "share of transactions", "rangemode": "tozero", "tickformat": ".2%"},
        xaxis={"title": "time (UTC)", "range": list(window)},
    )
    if not rows:
        return _empty(figure)
    buckets = [r["bucket"] for r in rows]
    flagged = [(r["reviews"] + r["frauds"]) / r["transactions"] for r in rows]
    declined = [r["frauds"] / r["transactions"] for r in rows]
    figure.add_scatter(x=buckets, y=flagged, name="flagged", mode="lines", line_color=DECISION_COLOURS["review"])
    figure.add_scatter(x=buckets, y=declined, name="declined", mode="lines", line_color=DECISION_COLOURS["decline"])
    for name, share in (model.expected if model else {}).items():
        colour = DECISION_COLOURS["review" if name == "flagged" else "decline"]
        figure.add_hline(
            y=share,
            line={"color": colour, "dash": "dash"},
            annotation_position="top left" if name == "flagged" else "bottom right",
            annotation={"text": f"card: {share:.2%} {name} ({model.version if model else ''})", "font": {"size": 11}},
        )
    return figure


def distribution(
    rows: list[dict[str, Any]], metric: str, title: str, cuts: dict[str, float] | None = None, bins: int = 20
) -> go.Figure:
    """`cuts`: the served model's cut points on this score; empty when it decides by expected cost."""
    # A log count axis: approvals outnumber the flagged by orders of magnitude, which would leave one tall bar.
    figure = _figure(
        title, barmode="stack", xaxis={"title": "score (0-1)", "range": [0, 1]}, yaxis_title="transactions (log)"
    )
    if not any(r["metric"] == metric for r in rows):
        return _empty(figure)
    totals = [0] * bins
    for decision, colour in DECISION_COLOURS.items():
        counts = [0] * bins
        for r in rows:
            if r["decision"] == decision and r["metric"] == metric and r["bin"] is not None:
                counts[max(0, min(bins, r["bin"]) - 1)] += r["n"]
        totals = [t + c for t, c in zip(totals, counts, strict=True)]
        figure.add_bar(
            x=[(i + 0.5) / bins for i in range(bins)], y=counts, name=decision, marker_color=colour, width=1 / bins
        )
    # From below 1, so a bin of one transaction still shows, to a little above the tallest stack.
    figure.update_yaxes(type="log", range=[-0.3, math.log10(max(max(totals), 2)) + 0.1], dtick=1, tickformat=",d")
    for decision, cut in (cuts or {}).items():  # where the served model's decisions change
        figure.add_vline(
            x=cut,
            line={"color": DECISION_COLOURS[decision], "dash": "dash"},
            annotation={"text": f"{decision} ≥ {cut:.3g}", "font": {"size": 11}},
        )
    if cuts == {}:  # the served model decides by expected cost: the cut moves with the amount
        figure.add_annotation(
            text="decided by expected cost (p x amount): no single cut",
            xref="paper",
            yref="paper",
            x=1,
            y=1,
            showarrow=False,
            font={"size": 11},
        )
    return figure


# The map's outlines are world_110m.json in dash_app/assets/topojson, shipped with the package: graphs pass its
# folder as plotly.js's topojsonURL, so nothing is fetched from a CDN at run time.
# The whole inhabited world, always: left to itself plotly.js zooms a single place to a blank square.
_GEO: dict[str, Any] = {
    "projection": {"type": "natural earth", "scale": 1},
    "fitbounds": False,
    "lonaxis": {"range": [-180, 180]},
    "lataxis": {"range": [-60, 85]},
    "showcountries": True,
    "countrycolor": "#afb8c1",
    "showland": True,
    "landcolor": "#f6f8fa",
    "showocean": True,
    "oceancolor": "#eef4fa",
    "showframe": False,
}


TOPOJSON = "topojson/"  # the assets folder of the map outlines


def graph_config(topojson_url: str) -> Graph.Config:
    """dcc.Graph's config: no plotly logo, and map outlines from the dashboard's own assets."""
    return {"displaylogo": False, "topojsonURL": topojson_url}


def _map(title: str, points: list[dict[str, Any]], nothing: str) -> go.Figure:
    """A world map, saying `nothing` when there are no points to draw."""
    figure = _figure(title, geo=_GEO, margin={"l": 0, "r": 0, "t": 40, "b": 10})
    if not points:
        figure.add_annotation(text=nothing, showarrow=False, font={"size": 14, "color": "#57606a"})
    return figure


def places(rows: list[dict[str, Any]]) -> go.Figure:
    """Transactions by city on a world map, sized by count and coloured by mean fraud probability."""
    figure = _map("Where transactions come from", rows, NO_DATA)
    if not rows:
        return figure
    figure.add_scattergeo(
        lat=[r["latitude"] for r in rows],
        lon=[r["longitude"] for r in rows],
        mode="markers",
        text=[f"{r['city']}: {r['transactions']:,} tx, mean p(fraud) {r['mean_proba']:.2f}" for r in rows],
        hoverinfo="text",
        marker={
            "size": [min(30, 4 + r["transactions"] ** 0.5) for r in rows],
            "color": [r["mean_proba"] for r in rows],
            "colorscale": RISK_SCALE,
            "cmin": 0,
            "cmax": 1,
            "colorbar": {"title": "mean<br>p(fraud)"},
            "line": {"width": 0.5, "color": "#57606a"},
        },
    )
    return figure


def trail(rows: list[dict[str, Any]]) -> go.Figure:
    """An entity's located transactions, oldest to newest, joined in time order: a jump across the map between
    two close payments is what impossible travel looks like."""
    located = [r for r in reversed(rows) if r.get("latitude") is not None and r.get("longitude") is not None]
    figure = _map("Where its transactions were made", located, "No located transaction")
    if not located:
        return figure
    figure.add_scattergeo(
        lat=[r["latitude"] for r in located],
        lon=[r["longitude"] for r in located],
        mode="lines+markers",
        text=[f"{r['received_at']:%Y-%m-%d %H:%M} UTC, {r.get('city') or '?'}: {r['decision']}" for r in located],
        hoverinfo="text",
        line={"width": 1, "color": "#8c959f"},
        marker={"size": 8, "color": [DECISION_COLOURS[r["decision"]] for r in located]},
    )
    return figure


def timeline(rows: list[dict[str, Any]]) -> go.Figure:
    """An entity's transactions over time: amount by decision (a burst of small payments is card testing)."""
    figure = _figure("Its transactions over time", xaxis_title="received (UTC)", yaxis_title="amount")
    if not rows:
        return _empty(figure)
    for decision, colour in DECISION_COLOURS.items():
        chosen = [r for r in rows if r["decision"] == decision]
        if chosen:
            figure.add_scatter(
                x=[r["received_at"] for r in chosen],
                y=[r["amount"] for r in chosen],
                mode="markers",
                name=decision,
                marker={"color": colour, "size": 8},
            )
    return figure


def breakdown(rows: list[dict[str, Any]], dimension: str) -> go.Figure:
    figure = _figure(
        f"By {dimension.replace('_', ' ')}",
        xaxis_title="transactions",
        barmode="stack",
        yaxis={"autorange": "reversed"},
    )
    if not rows:
        return _empty(figure)
    labels = [f"{r['value']} ({r['frauds'] / r['transactions']:.1%} declined)" for r in rows]
    figure.add_bar(
        y=labels,
        x=[r["transactions"] - r["frauds"] for r in rows],
        orientation="h",
        name="not declined",
        marker_color="#9ecae1",
    )
    figure.add_bar(y=labels, x=[r["frauds"] for r in rows], orientation="h", name="declined", marker_color="#d7191c")
    return figure


def score_distributions(bins: list[dict[str, Any]], names: dict[str, str], bin_count: int) -> go.Figure:
    """The champion's and the challenger's fraud probabilities on the same transactions (log10 bins)."""
    figure = _figure("Fraud probability, same transactions", xaxis={"title": "p(fraud)", "type": "log"})
    if not bins:
        return _empty(figure)
    width = 6 / bin_count
    for model, colour in (("champion", "#2c7bb6"), ("challenger", "#d7191c")):
        counts = [0] * bin_count
        for row in bins:
            if row["model"] == model:
                counts[min(max(int(row["bin"]), 1), bin_count) - 1] += int(row["n"])
        centres = [10 ** (-6 + (i + 0.5) * width) for i in range(bin_count)]
        figure.add_trace(go.Scatter(x=centres, y=counts, name=names[model], mode="lines+markers", line_color=colour))
    figure.update_layout(yaxis=_count_axis("transactions", max(int(r["n"]) for r in bins)))
    return figure


def drift_series(rows: list[dict[str, Any]], watch: float, act: float) -> go.Figure:
    """PSI of the score and of the most drifted input per hour and version, with the watch and act lines."""
    figure = _figure("Drift against the training reference (PSI)", yaxis={"title": "PSI", "rangemode": "tozero"})
    if not rows:
        return _empty(figure)
    for version in sorted({r["model_version"] for r in rows}):
        mine = [r for r in rows if r["model_version"] == version]
        hours = [r["window_start"] for r in mine]
        figure.add_trace(
            go.Scatter(x=hours, y=[r["score_psi"] for r in mine], name=f"{version} score", mode="lines+markers")
        )
        figure.add_trace(
            go.Scatter(
                x=hours,
                y=[r["max_feature_psi"] for r in mine],
                name=f"{version} most drifted input",
                mode="lines+markers",
                text=[r["max_feature"] for r in mine],
                hovertemplate="%{x}<br>%{text}: %{y:.3f}<extra></extra>",
                line={"dash": "dot"},
            )
        )
    for level, label, colour in ((watch, "watch", "#fdae61"), (act, "act", "#d7191c")):
        figure.add_hline(y=level, line_dash="dash", line_color=colour, annotation_text=f"{label} {level}")
    return figure


def hourly_shares(rows: list[dict[str, Any]]) -> go.Figure:
    """Decision shares and the share scored without behaviour features, per hour (all versions)."""
    figure = _figure("Decisions and degraded scorings per hour", yaxis={"title": "share", "tickformat": ".1%"})
    if not rows:
        return _empty(figure)
    totals: dict[datetime, dict[str, float]] = {}
    for r in rows:
        hour = totals.setdefault(r["window_start"], {"n": 0.0, "review": 0.0, "decline": 0.0, "degraded": 0.0})
        hour["n"] += r["transactions"]
        for key in ("review", "decline", "degraded"):
            hour[key] += r[f"{key}_share"] * r["transactions"]
    hours = sorted(totals)
    for key, colour in (("review", "#fdae61"), ("decline", "#d7191c"), ("degraded", "#57606a")):
        shares = [totals[h][key] / totals[h]["n"] for h in hours]
        figure.add_trace(go.Scatter(x=hours, y=shares, name=key, mode="lines+markers", line_color=colour))
    return figure
