"""The model's reasons: each feature's contribution to a flagged transaction's score, from LightGBM's own
TreeSHAP (`pred_contrib`) on the booster the served ONNX classifier was exported from (the model set checks
that they agree), in words an analyst reads: "9 payments by the user in the last hour; usual: 1"."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudflow.behaviour.definitions import FEATURES

TOP = 3  # contributions given per flagged transaction
_PHRASES = {f.name: f.phrase for f in FEATURES} | {"Amount": "an amount of {v:,.2f}", "Time": "Time = {v:g}"}


_SPEC = re.compile(r"\{v(?::([^}]*))?\}")


def _template(name: str) -> str:
    # The PCA components of the card data have no meaning to name.
    return _PHRASES.get(name, "card-data component " + name + " = {v:.2f}")


def phrase(name: str, value: float, typical: float | None = None) -> str:
    """A feature's value in words, and what a legitimate transaction usually has (the training median)."""
    if math.isnan(value):
        return f"{name} unknown"
    template = _template(name)
    text = template.format(v=value)
    if typical is not None and (spec := _SPEC.search(template)) is not None:
        text += "; usual: " + format(typical, spec.group(1) or "")
    return text


class Explainer:
    def __init__(self, path: Path, names: list[str], typical: dict[str, float]) -> None:
        import lightgbm as lgb  # only where a model set has an explainer

        self.booster = lgb.Booster(model_file=str(path))
        self.names = names
        self.typical = typical

    def probabilities(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        return np.asarray(self.booster.predict(x, num_threads=1), dtype=np.float64)

    def explain(self, x: npt.NDArray[np.float32]) -> list[list[dict[str, Any]]]:
        """For each row of the classifier's inputs, its TOP features pushing towards fraud (log-odds)."""
        contributions = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=1))[:, :-1]  # last: bias
        # Whole-matrix numpy, then plain Python lists: a numpy call per row would keep the scoring thread
        # holding the interpreter long enough to stall the event loop on a large batch.
        order = np.argsort(-contributions, axis=1)[:, :TOP]
        tops = np.take_along_axis(contributions, order, axis=1)
        explained = []
        for where, amounts, values in zip(order.tolist(), tops.tolist(), x.tolist(), strict=True):
            explained.append(
                [
                    {
                        "feature": self.names[i],
                        "value": None if math.isnan(values[i]) else values[i],
                        "contribution": round(c, 4),
                        "text": phrase(self.names[i], values[i], self.typical.get(self.names[i])),
                    }
                    for i, c in zip(where, amounts, strict=True)
                    if c > 0
                ]
            )
        return explained
