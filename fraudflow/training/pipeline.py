"""Train both models on a time-ordered split, export them to ONNX and write the manifest."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fraudflow.behaviour.definitions import NAMES as BEHAVIOUR
from fraudflow.behaviour.definitions import TIME_FEATURES, time_features
from fraudflow.behaviour.offline import replay
from fraudflow.data.columns import AMOUNT_INDEX, FEATURES, TIME_INDEX
from fraudflow.data.dataset import Dataset
from fraudflow.drift import SCORE, distribution
from fraudflow.manifest import (
    MODEL_INPUTS,
    AnomalyScale,
    CostPolicy,
    Distribution,
    ExplainerFile,
    Manifest,
    SampleFile,
    Thresholds,
    TrainingData,
    file_sha256,
)
from fraudflow.registry import Registry
from fraudflow.scoring import ModelSet
from fraudflow.training.evaluate import bootstrap_card, bootstrap_pr_auc, choose_thresholds, classification_metrics
from fraudflow.training.export import check_parity, export_classifier, export_detector, onnx_output
from fraudflow.training.policy import Costs, calibration_card, choose_policy, fit_calibration, policy_card

CLASSIFIER_FILE = "fraud_classifier.onnx"
DETECTOR_FILE = "anomaly_detector.onnx"
SAMPLE_FILE = "sample.npz"
SAMPLE_ROWS = 256
EXPLAINER_FILE = "fraud_classifier.lgb.txt"  # the same trees as LightGBM saves them: TreeSHAP for the reasons


class TrainingError(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 0
    validation_share: float = 0.2
    test_share: float = 0.2
    target_recall: float = 0.85
    target_precision: float = 0.80
    # Regularised on purpose: with ~500 frauds, deep unconstrained trees overfit badly.
    trees: int = 300
    leaves: int = 15
    learning_rate: float = 0.05
    min_child_samples: int = 100
    fraud_weight: float = 5.0
    detector_trees: int = 100
    threads: int = 2  # fixed so a re-run reproduces the same trees
    costs: Costs = field(default_factory=Costs)
    min_frauds: int = 20  # per split
    max_decline_share: float = 0.02  # of validation


DAY_S = 86_400.0
MIN_DAYS_FOR_DAY_SPLITS = 5  # one day each for validation and test, and enough left to train on


@dataclass(frozen=True)
class Split:
    train: slice
    validation: slice
    test: slice
    how: dict[str, Any] = field(default_factory=dict)  # for the card: by whole days, or by rows and why


@dataclass(frozen=True)
class TrainingReport:
    manifest: Manifest
    baseline: dict[str, Any]
    parity: dict[str, float]
    folder: Path  # where the published version is (not yet served: promoting it is the caller's choice)


def time_split(dataset: Dataset, config: TrainingConfig) -> Split:
    """Earlier transactions train, later ones validate and test: no future leaks into training. Validation
    and test are windows of the same number of whole days (24-hour periods counted back from the last
    transaction), so each holds every hour of the daily rhythm and the two are alike; a data set spanning
    too few days for that (the ULB file: two) is split by rows, and the card says so."""
    n = dataset.rows
    time = dataset.features[:, TIME_INDEX].astype(np.float64)
    span_days = (time[-1] - time[0]) / DAY_S
    if span_days >= MIN_DAYS_FOR_DAY_SPLITS:
        test_days = max(1, round(span_days * config.test_share))
        validation_days = max(1, round(span_days * config.validation_share))
        test_from = time[-1] - test_days * DAY_S
        validation_from = test_from - validation_days * DAY_S
        test_start = int(np.searchsorted(time, test_from, side="right"))
        validation_start = int(np.searchsorted(time, validation_from, side="right"))
        how: dict[str, Any] = {
            "by": "whole days",
            "train_days": round((validation_from - time[0]) / DAY_S, 2),
            "validation_days": validation_days,
            "test_days": test_days,
        }
    else:
        test_start = int(n * (1.0 - config.test_share))
        validation_start = int(n * (1.0 - config.test_share - config.validation_share))
        how = {
            "by": "rows",
            "why": f"the data spans {span_days:.1f} days: whole-day windows need {MIN_DAYS_FOR_DAY_SPLITS}",
        }
    return Split(slice(0, validation_start), slice(validation_start, test_start), slice(test_start, n), how)


def _require_frauds(labels: npt.NDArray[np.int8], part: str, minimum: int) -> None:
    """Too few frauds in a split make every figure of the card noise and every cut arbitrary."""
    frauds = int(labels.sum())
    if frauds < minimum or frauds == len(labels):
        raise TrainingError(
            f"the {part} split has {frauds} frauds among {len(labels)} transactions; at least {minimum} frauds "
            f"(and some legitimate transactions) are needed in each of train, validation and test: use more rows "
            "or a higher fraud rate"
        )


def check_publishable(
    validation: dict[str, Any],
    policy: CostPolicy,
    validation_decisions: npt.NDArray[np.int8],
    config: TrainingConfig,
) -> None:
    """What a set must show on validation before it is published: it beats the baseline, it reviews within
    the capacity, and it declines no more than the share allowed."""
    if validation["classifier_pr_auc"] <= validation["baseline_pr_auc"]:
        raise TrainingError(
            "the classifier does not beat the logistic-regression baseline on validation PR-AUC "
            f"({validation['classifier_pr_auc']} <= {validation['baseline_pr_auc']}): nothing was published"
        )
    reviews, declines = (float(np.mean(validation_decisions == d)) for d in (1, 2))
    if reviews > policy.review_capacity + 1e-9:
        raise TrainingError(
            f"the policy reviews {reviews:.2%} of validation, above the capacity {policy.review_capacity:.2%}: "
            "nothing was published"
        )
    if declines > config.max_decline_share:
        raise TrainingError(
            f"the policy declines {declines:.2%} of validation (at most {config.max_decline_share:.2%} allowed): "
            "check the costs (--false-decline-share, --false-decline-fixed); nothing was published"
        )


def with_sample(stage: Path, manifest: Manifest, rows: npt.NDArray[np.float32]) -> Manifest:
    """Store validation rows with the decisions the staged set gives them; the scorer refuses a set that
    decides them differently at load (files, policy or runtime changed under the same name). Returns the
    final manifest, written to the stage."""
    manifest = manifest.model_copy(update={"version": manifest.content_version()})
    manifest.write(stage)
    decisions = ModelSet(stage).score(np.ascontiguousarray(rows, dtype=np.float32)).decision
    np.savez(stage / SAMPLE_FILE, rows=rows.astype(np.float32), decisions=decisions)
    sample = SampleFile(file=SAMPLE_FILE, sha256=file_sha256(stage / SAMPLE_FILE), rows=len(rows))
    manifest = manifest.model_copy(update={"sample": sample})
    manifest = manifest.model_copy(update={"version": manifest.content_version()})
    manifest.write(stage)
    return manifest


def fit_classifier(x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], config: TrainingConfig) -> lgb.LGBMClassifier:
    model = lgb.LGBMClassifier(
        n_estimators=config.trees,
        num_leaves=config.leaves,
        learning_rate=config.learning_rate,
        min_child_samples=config.min_child_samples,
        scale_pos_weight=config.fraud_weight,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.7,
        reg_lambda=5.0,
        random_state=config.seed,
        n_jobs=config.threads,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    return model.fit(x, y)


def fit_detector(x: npt.NDArray[np.float32], config: TrainingConfig) -> IsolationForest:
    return IsolationForest(n_estimators=config.detector_trees, random_state=config.seed, n_jobs=1).fit(x)


def fit_baseline(x: npt.NDArray[np.float32], y: npt.NDArray[np.int8]) -> Any:
    if np.isnan(x).any():  # behaviour features may be missing: impute, and tell the model where
        steps = [SimpleImputer(strategy="median", add_indicator=True), StandardScaler()]
    else:
        steps = [StandardScaler()]
    return make_pipeline(*steps, LogisticRegression(class_weight="balanced", max_iter=2000)).fit(x, y)


@dataclass(frozen=True)
class Inputs:
    """What the models read: all columns in the scorer's layout (MODEL_INPUTS), and the names of each
    model's (None: the manifest's)."""

    full: npt.NDArray[np.float32]
    classifier: list[str]
    detector: list[str] | None


def model_inputs(data: Dataset) -> Inputs:
    """The 30 request columns alone for a data set without metadata (the ULB file); with a history, its
    behaviour features replace Time (seconds since the data set's first row mean nothing in production) and
    the detector, which cannot take missing values, reads V1..V28 and Amount."""
    if data.served is not None:  # read from fraud_predictions: exactly what was served
        full = np.hstack([data.features, data.served]).astype(np.float32)
        return Inputs(full, [*FEATURES[1:], *BEHAVIOUR], list(FEATURES[1:]))
    if data.history is None:
        return Inputs(data.features, list(FEATURES), None)
    state = replay(data.history.activities(data.features[:, AMOUNT_INDEX]))
    times = np.array([time_features(t) for t in data.history.timestamp.tolist()])
    full = np.hstack([data.features, state, times]).astype(np.float32)
    return Inputs(full, [*FEATURES[1:], *BEHAVIOUR], list(FEATURES[1:]))


def columns(inputs: Inputs, names: list[str]) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(inputs.full[:, [MODEL_INPUTS.index(n) for n in names]])


def fraud_proba(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    return np.asarray(model.predict_proba(x), dtype=np.float64)[:, 1]


def typical_values(legitimate: npt.NDArray[np.float32], names: list[str]) -> dict[str, float]:
    """The median of each input over legitimate training transactions (inputs always missing left out)."""
    known = ~np.isnan(legitimate).all(axis=0)
    medians = np.nanmedian(legitimate[:, known], axis=0)
    return {name: round(float(m), 4) for name, m in zip(np.array(names)[known].tolist(), medians, strict=True)}


TIME_NAMES = {f.name for f in TIME_FEATURES}


def drift_reference(
    x_valid: npt.NDArray[np.float32], names: list[str], score: npt.NDArray[np.float32]
) -> dict[str, Distribution]:
    """What the drift watch compares live traffic with: the validation split (out of sample for the score).
    The time of day and week are left out: an hour of traffic holds one hour of the day by construction."""
    found = {SCORE: distribution(score)} | {
        n: distribution(x_valid[:, j]) for j, n in enumerate(names) if n not in TIME_NAMES
    }
    return {name: d for name, d in found.items() if d is not None}


def anomaly_scale(raw: npt.NDArray[np.float64]) -> AnomalyScale:
    # The detector's decision_function is high for normal rows; we flip it so higher means more anomalous.
    outlier = -raw
    return AnomalyScale(low=float(np.quantile(outlier, 0.005)), high=float(np.quantile(outlier, 0.9995)))


def train(
    dataset: Dataset, out_dir: Path, config: TrainingConfig | None = None, about: dict[str, Any] | None = None
) -> TrainingReport:
    """`about`: what the card should say of the data beyond its counts (a set read from the database: its
    window, cutoff, label delay and what was left out)."""
    config = config or TrainingConfig()
    data = dataset.time_ordered()
    split = time_split(data, config)
    y = data.labels
    for part in ("train", "validation", "test"):
        _require_frauds(y[getattr(split, part)], part, config.min_frauds)
    inputs = model_inputs(data)
    x = columns(inputs, inputs.classifier)
    x_detector = columns(inputs, inputs.detector or inputs.classifier)

    classifier = fit_classifier(x[split.train], y[split.train], config)
    detector = fit_detector(x_detector[split.train], config)
    baseline = fit_baseline(x[split.train], y[split.train])

    targets = {"target_recall": config.target_recall, "target_precision": config.target_precision}
    x_valid, y_valid = x[split.validation], y[split.validation]
    thresholds = choose_thresholds(y_valid, fraud_proba(classifier, x_valid), **targets)
    baseline_thresholds = choose_thresholds(y_valid, fraud_proba(baseline, x_valid), **targets)
    scale = anomaly_scale(detector.decision_function(x_detector[split.validation]))
    raw_valid = fraud_proba(classifier, x_valid)
    calibration = fit_calibration(raw_valid, y_valid)
    amounts = data.features[:, AMOUNT_INDEX].astype(np.float64)
    anomaly_valid = scale.apply(detector.decision_function(x_detector[split.validation]))
    policy, anomaly_finding = choose_policy(
        calibration.apply(raw_valid), amounts[split.validation], anomaly_valid, y_valid, config.costs, config.seed
    )
    validation_decisions = policy.decide(calibration.apply(raw_valid), amounts[split.validation], anomaly_valid)

    registry = Registry(out_dir)
    stage = registry.staging()  # published only once every check has passed; removed otherwise
    try:
        classifier_file = export_classifier(classifier, stage / CLASSIFIER_FILE)
        detector_file = export_detector(detector, stage / DETECTOR_FILE)
        classifier.booster_.save_model(stage / EXPLAINER_FILE)
        explainer_file = ExplainerFile(file=EXPLAINER_FILE, sha256=file_sha256(stage / EXPLAINER_FILE))
        x_test = np.ascontiguousarray(x[split.test])
        x_detector_test = np.ascontiguousarray(x_detector[split.test])
        proba_test = fraud_proba(classifier, x_test)
        parity = {
            "fraud_classifier": check_parity(
                "fraud_classifier", proba_test, onnx_output(stage / CLASSIFIER_FILE, classifier_file, x_test)
            ),
            "anomaly_detector": check_parity(
                "anomaly_detector",
                detector.decision_function(x_detector_test),
                onnx_output(stage / DETECTOR_FILE, detector_file, x_detector_test),
            ),
        }
        metrics = classification_metrics(y[split.test], proba_test, thresholds)
        baseline_metrics = classification_metrics(y[split.test], fraud_proba(baseline, x_test), baseline_thresholds)
        metrics["baseline_logistic_regression"] = {
            "pr_auc": baseline_metrics["pr_auc"],
            "roc_auc": baseline_metrics["roc_auc"],
        }
        metrics["intervals"] = bootstrap_card(y[split.test], proba_test, thresholds, seed=config.seed)
        metrics["test_rows"] = int(split.test.stop - split.test.start)
        metrics["split"] = split.how
        metrics["test_frauds"] = int(y[split.test].sum())
        metrics["behaviour"] = behaviour_comparison(data, inputs, split, proba_test, thresholds, config)
        anomaly_test = scale.apply(detector.decision_function(x_detector_test))
        metrics["policy"] = {
            "costs": asdict(config.costs),
            "anomaly_detector": anomaly_finding,
            "calibration": calibration_card(y[split.test], proba_test, calibration.apply(proba_test)),
            "test": policy_card(
                {
                    "cost_policy": policy.decide(calibration.apply(proba_test), amounts[split.test], anomaly_test),
                    "probability_policy": np.searchsorted(
                        [thresholds.review, thresholds.decline], proba_test, side="right"
                    ).astype(np.int8),
                },
                y[split.test],
                amounts[split.test],
                config.costs,
                config.seed,
            ),
        }
        # The ship check is decided on validation; test is only reported.
        validation = {
            "classifier_pr_auc": round(float(average_precision_score(y_valid, raw_valid)), 4),
            "baseline_pr_auc": round(float(average_precision_score(y_valid, fraud_proba(baseline, x_valid))), 4),
            "frauds": int(y_valid.sum()),
        }
        metrics["validation"] = validation
        if about:
            metrics["data"] = about
        metrics["refit"] = {
            "done": False,
            "why": "the cut points, the calibration and the cost policy are chosen on the validation split; a "
            "model refitted on it would leave them no held-out data to be chosen on",
        }
        check_publishable(validation, policy, validation_decisions, config)
        if inputs.detector is not None:
            detector_file = detector_file.model_copy(update={"features": inputs.detector})
        manifest = Manifest(
            version="",
            created_at=datetime.now(UTC).replace(microsecond=0),
            features=inputs.classifier,
            fraud_classifier=classifier_file,
            anomaly_detector=detector_file,
            thresholds=thresholds,
            anomaly_scale=scale,
            metrics=metrics,
            explainer=explainer_file,
            calibration=calibration,
            policy=policy,
            typical=typical_values(x[split.train][y[split.train] == 0], inputs.classifier),
            reference=drift_reference(x_valid, inputs.classifier, calibration.apply(raw_valid)),
            training_data=TrainingData(
                source=data.source,
                rows=data.rows,
                frauds=data.frauds,
                sha256=data.sha256(),
                validation_from_time=float(data.features[split.validation.start, TIME_INDEX]),
                test_from_time=float(data.features[split.test.start, TIME_INDEX]),
            ),
        )
        manifest = with_sample(stage, manifest, inputs.full[split.validation][:SAMPLE_ROWS])
        version = registry.publish(stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return TrainingReport(
        manifest=manifest, baseline=baseline_metrics, parity=parity, folder=registry.versions_dir / version
    )


def behaviour_comparison(
    data: Dataset,
    inputs: Inputs,
    split: Split,
    proba_test: npt.NDArray[np.float64],
    thresholds: Thresholds,
    config: TrainingConfig,
) -> dict[str, Any]:
    """What the behaviour features add, on the same time-ordered test split: PR-AUC with and without them
    (bootstrap 95% intervals, with the number of frauds), and the share of fraud value caught at the cuts."""
    if data.history is None:
        return {
            "available": False,
            "why": "the data set has no metadata (user, device, IP, place, time): behaviour features are missing",
        }
    y = data.labels
    reference = columns(inputs, list(FEATURES[1:]))
    without = fit_classifier(reference[split.train], y[split.train], config)
    y_test = y[split.test]
    amounts = data.features[split.test, AMOUNT_INDEX].astype(np.float64)
    fraud_value = float(amounts[y_test == 1].sum())
    return {
        "available": True,
        "inputs": list(BEHAVIOUR),
        "pr_auc_with": bootstrap_pr_auc(y_test, proba_test, seed=config.seed),
        "pr_auc_without": bootstrap_pr_auc(y_test, fraud_proba(without, reference[split.test]), seed=config.seed),
        "fraud_value_caught": {
            band: round(float(amounts[(y_test == 1) & (proba_test >= cut)].sum()) / fraud_value, 4)
            for band, cut in (("at_review", thresholds.review), ("at_decline", thresholds.decline))
        },
    }


_POLICY_ROWS = (
    ("frauds_caught", "frauds caught", "{:.0f}"),
    ("fraud_value_caught", "fraud value caught", "{:.1%}"),
    ("reviews_per_1000", "reviews per 1,000", "{:.1f}"),
    ("false_declines_per_1000", "false declines per 1,000", "{:.2f}"),
    ("cost_per_1000", "cost per 1,000", "{:,.0f}"),
)


def _policy_lines(policy: dict[str, Any] | None) -> list[str]:
    if not policy:
        return []
    test = policy["test"]
    lines = [
        "",
        f"decision policy (test, {test['frauds']} frauds, bootstrap 95%){'':<4}{'by expected cost':<28}"
        "probability cuts only",
    ]
    for key, label, form in _POLICY_ROWS:
        cells = []
        for name in ("cost_policy", "probability_policy"):
            m = test[name][key]
            cells.append(f"{form.format(m['value'])} [{form.format(m['low'])}, {form.format(m['high'])}]")
        lines.append(f"  {label:<56}{cells[0]:<28}{cells[1]}")
    anomaly, calibration = policy["anomaly_detector"], policy["calibration"]
    lines += [
        f"anomaly detector: {'joins the decision' if anomaly['joins_decision'] else 'monitoring only'} "
        f"({anomaly['why']}; validation cost change {anomaly['validation_cost_change']})",
        f"calibration ({calibration['method']}): Brier {calibration['brier_raw']:.5f} -> "
        f"{calibration['brier_calibrated']:.5f} on test",
    ]
    return lines


def _split_line(how: dict[str, Any]) -> str:
    if how.get("by") == "whole days":
        return (
            f"split by whole days: train {how['train_days']}, validation {how['validation_days']}, "
            f"test {how['test_days']}"
        )
    return f"split by rows ({how.get('why', '')})"


def format_report(report: TrainingReport) -> str:
    m = report.manifest
    metrics = m.metrics
    lines = [
        f"model version {m.version}  (data: {m.training_data.source}; {m.training_data.rows} rows, "
        f"{m.training_data.frauds} frauds)",
        f"test split: {metrics['test_rows']} rows, {metrics['test_frauds']} frauds (Time >= "
        f"{m.training_data.test_from_time:.0f} s); {_split_line(metrics.get('split', {}))}",
        f"thresholds (validation): review >= {m.thresholds.review:.4f} (recall target {m.thresholds.target_recall}), "
        f"decline >= {m.thresholds.decline:.4f} (precision target {m.thresholds.target_precision})",
        "",
        f"{'model':<28}{'PR-AUC':>8}{'ROC-AUC':>9}   {'at review P/R/F1':<22}{'at decline P/R/F1':<22}",
    ]
    for name, values in (("LightGBM classifier", metrics), ("logistic regression", report.baseline)):
        bands = [values[k] for k in ("at_review", "at_decline")]
        cells = [f"{b['precision']:.3f}/{b['recall']:.3f}/{b['f1']:.3f}" for b in bands]
        lines.append(f"{name:<28}{values['pr_auc']:>8.4f}{values['roc_auc']:>9.4f}   {cells[0]:<22}{cells[1]:<22}")
    behaviour = metrics.get("behaviour", {})
    if behaviour.get("available"):
        with_, without = behaviour["pr_auc_with"], behaviour["pr_auc_without"]
        caught = behaviour["fraud_value_caught"]
        lines += [
            "",
            f"behaviour features (test, {with_['frauds']} frauds, bootstrap 95%): PR-AUC {with_['value']:.4f} "
            f"[{with_['low']:.4f}, {with_['high']:.4f}] with them, {without['value']:.4f} "
            f"[{without['low']:.4f}, {without['high']:.4f}] without; fraud value caught "
            f"{caught['at_review']:.1%} at review, {caught['at_decline']:.1%} at decline",
        ]
    elif behaviour:
        lines += ["", f"behaviour features: not used ({behaviour['why']})"]
    if intervals := metrics.get("intervals"):
        figures = ", ".join(
            f"{k} {v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for k, v in intervals.items() if k != "frauds"
        )
        lines += ["", f"classifier on test, bootstrap 95% ({intervals['frauds']} frauds): {figures}"]
    if validation := metrics.get("validation"):
        lines += [
            "",
            f"ship check (validation, {validation['frauds']} frauds): PR-AUC {validation['classifier_pr_auc']:.4f} "
            f"against the baseline's {validation['baseline_pr_auc']:.4f}; test figures are reported only",
            f"refit on train + validation: not done ({metrics['refit']['why']})",
        ]
    lines += _policy_lines(metrics.get("policy"))
    lines += [
        "",
        f"ONNX parity (max |diff| on test): classifier {report.parity['fraud_classifier']:.1e}, "
        f"detector {report.parity['anomaly_detector']:.1e}",
    ]
    return "\n".join(lines)
