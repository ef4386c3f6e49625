"""The model's decision policy, chosen on the validation split: probabilities calibrated (Platt), a decision
by expected cost within the review team's capacity, and the anomaly detector admitted only where it lowers
the cost measurably. The card compares it, on test, with the probability-only policy."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression

from fraudflow.manifest import Calibration, CostPolicy

ANOMALY_QUANTILES = (0.999, 0.995, 0.99)  # candidate cuts: the most anomalous 0.1%, 0.5%, 1% of validation
ROUNDS = 200


@dataclass(frozen=True)
class Costs:
    """What each outcome costs, in the currency of the amounts (defaults: a few minutes of an analyst, a
    typical chargeback fee, the margin and goodwill lost when a good customer is turned away)."""

    review_cost: float = 5.0
    chargeback_fee: float = 15.0
    false_decline_share: float = 0.25
    false_decline_fixed: float = 2.0
    review_capacity: float = 0.02  # the share of transactions the team can review


def fit_calibration(raw: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> Calibration:
    clipped = np.clip(raw, 1e-12, 1 - 1e-12)
    logit = np.log(clipped / (1 - clipped)).reshape(-1, 1)
    model = LogisticRegression(C=1e6, max_iter=1000).fit(logit, labels)
    return Calibration(slope=round(float(model.coef_[0][0]), 6), intercept=round(float(model.intercept_[0]), 6))


def realised_cost(
    decision: npt.NDArray[np.int8], labels: npt.NDArray[np.int8], amount: npt.NDArray[Any], costs: Costs
) -> npt.NDArray[np.float64]:
    """What each decision cost once the truth is known (a review finds the fraud)."""
    a = np.maximum(amount.astype(np.float64), 0.0)
    fraud = labels == 1
    missed = (decision == 0) & fraud
    turned_away = (decision == 2) & ~fraud
    cost: npt.NDArray[np.float64] = (
        missed * (a + costs.chargeback_fee)
        + (decision == 1) * costs.review_cost
        + turned_away * (costs.false_decline_share * a + costs.false_decline_fixed)
    )
    return cost


def _penalty(policy: CostPolicy, proba: npt.NDArray[Any], amount: npt.NDArray[Any], capacity: float) -> float:
    """The smallest addition to the review cost that keeps the review share within `capacity`: a transaction
    is reviewed when the review (cost + penalty) is cheaper than approving and than declining."""
    approve, review, decline = policy.costs(proba, amount)
    margin = np.minimum(approve, decline) - review
    if capacity <= 0:
        return float(max(0.0, margin.max()))
    return float(max(0.0, np.quantile(margin, 1 - capacity, method="higher")))


def _paired_interval(
    first: npt.NDArray[np.float64], second: npt.NDArray[np.float64], seed: int
) -> tuple[float, float, float]:
    """Total of second - first, with a bootstrap 95% interval (rows resampled together)."""
    rng = np.random.default_rng(seed)
    difference = second - first
    draws = [difference[rng.integers(0, len(difference), len(difference))].sum() for _ in range(ROUNDS)]
    return float(difference.sum()), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def choose_policy(
    proba: npt.NDArray[Any],
    amount: npt.NDArray[Any],
    anomaly: npt.NDArray[Any],
    labels: npt.NDArray[np.int8],
    costs: Costs,
    seed: int = 0,
) -> tuple[CostPolicy, dict[str, Any]]:
    """The cost policy on calibrated validation probabilities, and what the anomaly detector was found worth."""
    base = CostPolicy(**asdict(costs), capacity_penalty=0.0)  # Costs names the policy's costs alike
    policy = base.model_copy(update={"capacity_penalty": _penalty(base, proba, amount, costs.review_capacity)})
    cost = realised_cost(policy.decide(proba, amount, anomaly), labels, amount, costs)
    best: tuple[CostPolicy, tuple[float, float, float]] | None = None
    for quantile in ANOMALY_QUANTILES:
        cut = float(np.quantile(anomaly, quantile))
        with_cut = policy.model_copy(update={"anomaly_review_from": cut})
        extra = float(np.mean((policy.decide(proba, amount, anomaly) == 0) & (anomaly >= cut)))
        capacity = max(costs.review_capacity - extra, 0.0)  # the anomaly's reviews come out of the capacity
        with_cut = with_cut.model_copy(update={"capacity_penalty": _penalty(base, proba, amount, capacity)})
        change = _paired_interval(
            cost, realised_cost(with_cut.decide(proba, amount, anomaly), labels, amount, costs), seed
        )
        if best is None or change[0] < best[1][0]:
            best = (with_cut, change)
    assert best is not None
    candidate, (total, low, high) = best
    joins = high < 0  # the whole interval below zero: it measurably lowers the cost
    finding = {
        "joins_decision": joins,
        "review_from": candidate.anomaly_review_from,
        "validation_cost_change": {"value": round(total, 2), "low": round(low, 2), "high": round(high, 2)},
        "why": "reviewing the most anomalous approvals lowered the validation cost (95% interval below 0)"
        if joins
        else "reviewing the most anomalous approvals did not measurably lower the validation cost: the "
        "detector's score is reported and monitored, not decided on",
    }
    return (candidate if joins else policy), finding


def _outcomes(
    decision: npt.NDArray[np.int8], labels: npt.NDArray[np.int8], amount: npt.NDArray[Any], costs: Costs
) -> dict[str, float]:
    n = len(labels)
    fraud = labels == 1
    flagged = decision >= 1
    value = float(amount[fraud].sum())
    return {
        "frauds_caught": float((flagged & fraud).sum()),
        "fraud_value_caught": float(amount[flagged & fraud].sum()) / value if value else 0.0,
        "reviews_per_1000": 1000 * float((decision == 1).sum()) / n,
        "declines_per_1000": 1000 * float((decision == 2).sum()) / n,
        "false_declines_per_1000": 1000 * float(((decision == 2) & ~fraud).sum()) / n,
        "cost_per_1000": 1000 * float(realised_cost(decision, labels, amount, costs).sum()) / n,
    }


def policy_card(
    decisions: dict[str, npt.NDArray[np.int8]],
    labels: npt.NDArray[np.int8],
    amount: npt.NDArray[Any],
    costs: Costs,
    seed: int = 0,
) -> dict[str, Any]:
    """Each policy's outcomes on the test split, each with a bootstrap 95% interval."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    samples = [rng.integers(0, n, n) for _ in range(ROUNDS)]
    card: dict[str, Any] = {"frauds": int(labels.sum()), "transactions": n}
    for name, decision in decisions.items():
        point = _outcomes(decision, labels, amount, costs)
        draws = [_outcomes(decision[s], labels[s], amount[s], costs) for s in samples]
        card[name] = {
            key: {
                "value": round(value, 4),
                "low": round(float(np.percentile([d[key] for d in draws], 2.5)), 4),
                "high": round(float(np.percentile([d[key] for d in draws], 97.5)), 4),
            }
            for key, value in point.items()
        }
    return card


RELIABILITY_BANDS = (0.0, 0.001, 0.01, 0.05, 0.2, 0.5, 1.0000001)


def calibration_card(
    labels: npt.NDArray[np.int8], raw: npt.NDArray[np.float64], calibrated: npt.NDArray[Any]
) -> dict[str, Any]:
    """Brier scores before and after calibration, and the reliability table of the calibrated probability
    on test: in each band, the mean predicted against the fraud rate seen."""
    table = []
    for low, high in itertools.pairwise(RELIABILITY_BANDS):
        band = (calibrated >= low) & (calibrated < high)
        if band.any():
            table.append(
                {
                    "band": [low, min(high, 1.0)],
                    "transactions": int(band.sum()),
                    "frauds": int(labels[band].sum()),
                    "predicted": round(float(calibrated[band].mean()), 5),
                    "observed": round(float(labels[band].mean()), 5),
                }
            )
    return {
        "method": "Platt scaling on the validation split",
        "brier_raw": round(float(np.mean((raw - labels) ** 2)), 6),
        "brier_calibrated": round(float(np.mean((calibrated.astype(np.float64) - labels) ** 2)), 6),
        "reliability": table,
    }
