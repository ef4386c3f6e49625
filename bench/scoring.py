"""Scorer cost per row: onnxruntime single-row vs batched, against native LightGBM/scikit-learn predict.

Goal (issue 3): both models together <= 50 us per row at batch >= 64; the ratio to native predict is reported.
The native models are trained here with the same code and data as the shipped ones, so both sides score
identical models on identical rows.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import onnxruntime
import sklearn

from bench.report import per_call_seconds, publish
from fraudflow.data.synthetic import generate
from fraudflow.scoring import Scorer
from fraudflow.training.pipeline import TrainingConfig, fit_classifier, fit_detector, time_split

BATCHES = (1, 8, 64, 256)
GOAL_US = 50.0


def _native(classifier: Any, detector: Any, x: Any) -> tuple[Any, Any]:
    return classifier.predict_proba(x), detector.decision_function(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=284_807, help="synthetic rows to train the native models on")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per timing run")
    args = parser.parse_args()

    config = TrainingConfig()
    data = generate(args.rows, seed=config.seed).time_ordered()
    split = time_split(data, config)
    x_train, y_train = data.features[split.train], data.labels[split.train]
    classifier, detector = fit_classifier(x_train, y_train, config), fit_detector(x_train, config)
    # Native predict at its fastest single-threaded setting, like the scorer's one thread per session.
    classifier.set_params(n_jobs=1)
    scorer = Scorer()
    rows = data.features[split.test]

    results = []
    for batch in BATCHES:
        x = rows[:batch].copy()
        onnx_us = per_call_seconds(functools.partial(scorer.score_batch, x), min_time=args.min_time) / batch * 1e6
        native_us = (
            per_call_seconds(functools.partial(_native, classifier, detector, x), min_time=args.min_time) / batch * 1e6
        )
        results.append(
            {
                "batch": batch,
                "onnx_us_per_row": round(onnx_us, 2),
                "native_us_per_row": round(native_us, 2),
                "speedup_vs_native": round(native_us / onnx_us, 1),
            }
        )

    amortised = max(r["onnx_us_per_row"] for r in results if r["batch"] >= 64)
    summary = [f"{'batch':>6} {'onnx us/row':>12} {'native us/row':>14} {'native/onnx':>12}"]
    summary += [
        f"{r['batch']:>6} {r['onnx_us_per_row']:>12.2f} {r['native_us_per_row']:>14.2f} "
        f"{r['speedup_vs_native']:>11.1f}x"
        for r in results
    ]
    verdict = "met" if amortised <= GOAL_US else "NOT met"
    summary.append(
        f"goal: both models <= {GOAL_US:.0f} us/row at batch >= 64: worst {amortised:.2f} us/row ({verdict})"
    )
    publish(
        "scoring",
        {
            "versions": {"onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__},
            "model_version": scorer.models.version,
            "results": results,
            "goal_us_per_row_at_batch_ge_64": GOAL_US,
            "worst_us_per_row_at_batch_ge_64": amortised,
            "goal_met": amortised <= GOAL_US,
        },
        summary,
    )


if __name__ == "__main__":
    main()
