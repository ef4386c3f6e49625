"""Decision thresholds (chosen on validation) and metrics (reported on test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from fraudflow.manifest import Thresholds


def choose_thresholds(
    labels: npt.NDArray[np.int8], proba: npt.NDArray[np.float64], *, target_recall: float, target_precision: float
) -> Thresholds:
    """decline: the lowest threshold reaching the target precision (else the best-F1 one);
    review: the highest threshold still reaching the target recall, never above decline."""
    precision, recall, cuts = precision_recall_curve(labels, proba)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    precise = np.flatnonzero(precision >= target_precision)
    if precise.size:
        decline = float(cuts[precise[0]])
    else:
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        decline = float(cuts[int(np.argmax(f1))])
    recalled = np.flatnonzero(recall >= target_recall)
    review = float(cuts[recalled[-1]]) if recalled.size else float(cuts[0])
    return Thresholds(
        review=min(review, decline), decline=decline, target_recall=target_recall, target_precision=target_precision
    )


def _at(labels: npt.NDArray[np.int8], flagged: npt.NDArray[np.bool_]) -> dict[str, float]:
    tp = int(np.sum(flagged & (labels == 1)))
    fp = int(np.sum(flagged & (labels == 0)))
    fn = int(np.sum(~flagged & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "flagged": tp + fp}


def classification_metrics(
    labels: npt.NDArray[np.int8], proba: npt.NDArray[np.float64], thresholds: Thresholds
) -> dict[str, Any]:
    return {
        "pr_auc": round(float(average_precision_score(labels, proba)), 4),
        "roc_auc": round(float(roc_auc_score(labels, proba)), 4),
        "at_review": _at(labels, proba >= thresholds.review),
        "at_decline": _at(labels, proba >= thresholds.decline),
    }


def _bootstrap(
    labels: npt.NDArray[np.int8],
    proba: npt.NDArray[np.float64],
    figures: Callable[[npt.NDArray[np.int8], npt.NDArray[np.float64]], dict[str, float]],
    rounds: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Each figure on the split and its bootstrap 95% interval (rows resampled with replacement; draws
    with a single class skipped)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    draws = []
    for _ in range(rounds):
        sample = rng.integers(0, n, n)
        if labels[sample].min() != labels[sample].max():
            draws.append(figures(labels[sample], proba[sample]))
    return {
        key: {
            "value": round(value, 4),
            "low": round(float(np.percentile([d[key] for d in draws], 2.5)), 4),
            "high": round(float(np.percentile([d[key] for d in draws], 97.5)), 4),
        }
        for key, value in figures(labels, proba).items()
    }


def bootstrap_pr_auc(
    labels: npt.NDArray[np.int8], proba: npt.NDArray[np.float64], *, rounds: int = 200, seed: int = 0
) -> dict[str, float | int]:
    """PR-AUC with a bootstrap 95% interval, and the frauds it rests on: with a few dozen frauds the
    interval is wide, and the card says so."""

    def pr_auc(y: npt.NDArray[np.int8], p: npt.NDArray[np.float64]) -> dict[str, float]:
        return {"pr_auc": float(average_precision_score(y, p))}

    return {**_bootstrap(labels, proba, pr_auc, rounds, seed)["pr_auc"], "frauds": int(labels.sum())}


def bootstrap_card(
    labels: npt.NDArray[np.int8],
    proba: npt.NDArray[np.float64],
    thresholds: Thresholds,
    *,
    rounds: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Every headline figure of the card with a bootstrap 95% interval (the test split resampled with
    replacement) and the frauds it rests on."""

    def figures(y: npt.NDArray[np.int8], p: npt.NDArray[np.float64]) -> dict[str, float]:
        out = {"pr_auc": float(average_precision_score(y, p)), "roc_auc": float(roc_auc_score(y, p))}
        for band, cut in (("review", thresholds.review), ("decline", thresholds.decline)):
            at = _at(y, p >= cut)
            out[f"precision_at_{band}"], out[f"recall_at_{band}"] = at["precision"], at["recall"]
        return out

    return {"frauds": int(labels.sum()), **_bootstrap(labels, proba, figures, rounds, seed)}
