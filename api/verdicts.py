"""From a scored transaction to the facts the policy reads, and the model's own reason in words."""

from __future__ import annotations

from typing import Any

from api.schemas import PredictRequest
from fraudflow.behaviour.definitions import Activity
from fraudflow.decisions.lists import EntityKind
from fraudflow.events import country_code
from fraudflow.manifest import CostPolicy, Thresholds
from fraudflow.scoring import Scores


def identities(activity: Activity) -> dict[EntityKind, str | None]:
    return {
        EntityKind.USER: activity.user_id,
        EntityKind.DEVICE: activity.device_id,
        EntityKind.IP: activity.ip_address,
        EntityKind.COUNTRY: country_code(activity.country),
    }


def facts(
    request: PredictRequest,
    activity: Activity,
    proba: float,
    anomaly: float,
    model_decision: str,
    behaviour: dict[str, float | None],
) -> dict[str, Any]:
    """The fields a rule reads (fraudflow.decisions.fields), but `lists`, which the policy adds."""
    geo = request.metadata.geo
    return {
        "amount": activity.amount,
        "user_id": activity.user_id,
        "device_id": activity.device_id,
        "ip_address": activity.ip_address,
        "country": country_code(activity.country),
        "city": geo.city if geo else None,
        "source": request.metadata.source,
        "fraud_proba": proba,
        "anomaly_score": anomaly,
        "expected_loss": proba * activity.amount,
        "model_decision": model_decision,
        **behaviour,
    }


def _why(decision: str, proba: float, amount: float, anomaly: float, policy: CostPolicy) -> str:
    approve, review, decline = policy.costs(proba, amount)
    loss = f"expected loss {approve:,.2f}"
    if decision == "decline":
        return (
            f"declining costs {decline:,.2f} in expectation, less than approving ({loss}) or a review ({review:,.2f})"
        )
    if decision == "review" and review >= approve:  # reviewed for its anomaly score alone
        return f"anomaly score {anomaly:.2f} at or above {policy.anomaly_review_from:.2f} ({loss})"
    if decision == "review":
        return f"{loss} above a review's cost {review:,.2f}"
    return f"{loss} below a review's cost {review:,.2f}"


def _cut(decision: str, thresholds: Thresholds) -> str:
    if decision == "decline":
        return f"at or above the decline cut {thresholds.decline:.3f}"
    if decision == "review":
        return f"at or above the review cut {thresholds.review:.3f}"
    return f"below the review cut {thresholds.review:.3f}"


def model_reason(
    decision: str,
    proba: float,
    amount: float,
    anomaly: float,
    scores: Scores,
    contributions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The model's view; for a transaction it flagged, the features that pushed it there the most."""
    policy = scores.policy
    why = _cut(decision, scores.thresholds) if policy is None else _why(decision, proba, amount, anomaly, policy)
    reason: dict[str, Any] = {
        "source": "model",
        "decision": decision,
        "fraud_proba": proba,
        "text": f"model: fraud probability {proba:.3f}, {why}",
    }
    if contributions:
        reason["contributions"] = contributions
        reason["text"] += "; mostly " + "; ".join(c["text"] for c in contributions)
    return reason
