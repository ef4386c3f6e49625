"""Training end to end on a small synthetic set: split, thresholds, parity, manifest, baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fraudflow.behaviour.definitions import NAMES as BEHAVIOUR
from fraudflow.data.columns import FEATURES
from fraudflow.data.dataset import load_creditcard, write_creditcard
from fraudflow.data.history import generate_history
from fraudflow.data.synthetic import generate
from fraudflow.manifest import Manifest, file_sha256
from fraudflow.registry import resolve
from fraudflow.scoring import Scorer
from fraudflow.training.evaluate import choose_thresholds
from fraudflow.training.export import ParityError, check_parity
from fraudflow.training.pipeline import (
    TrainingConfig,
    TrainingError,
    TrainingReport,
    format_report,
    model_inputs,
    time_split,
    train,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingReport, Path]:
    root = tmp_path_factory.mktemp("models")
    report = train(generate(40_000, fraud_rate=0.01, seed=11), root, TrainingConfig(trees=80))
    return report, report.folder  # published in the registry, not served yet


def test_manifest_describes_the_files(trained: tuple[TrainingReport, Path]) -> None:
    report, out = trained
    manifest = Manifest.read(out)
    assert manifest == report.manifest
    assert manifest.features == list(FEATURES)
    for spec in (manifest.fraud_classifier, manifest.anomaly_detector):
        assert file_sha256(out / spec.file) == spec.sha256
        assert spec.input == "features"
        assert spec.opset["ai.onnx.ml"] >= 1
    assert manifest.training_data.rows == 40_000
    assert manifest.training_data.frauds == 400
    assert manifest.training_data.validation_from_time < manifest.training_data.test_from_time
    assert 0 < manifest.thresholds.review <= manifest.thresholds.decline < 1
    assert manifest.anomaly_scale.high > manifest.anomaly_scale.low
    raw = json.loads((out / "manifest.json").read_text())
    assert {"pr_auc", "roc_auc", "at_review", "at_decline", "baseline_logistic_regression"} <= raw["metrics"].keys()


def test_onnx_matches_native_and_beats_baseline(trained: tuple[TrainingReport, Path]) -> None:
    report, _ = trained
    assert report.parity["fraud_classifier"] <= 1e-5
    assert report.parity["anomaly_detector"] <= 1e-5
    assert report.manifest.metrics["pr_auc"] > report.baseline["pr_auc"]
    assert report.manifest.metrics["pr_auc"] < 0.99  # the synthetic classes overlap, like the real ones


def test_trained_models_serve(trained: tuple[TrainingReport, Path]) -> None:
    _, out = trained
    data = generate(3_000, fraud_rate=0.05, seed=12)
    scores = Scorer(out).score_batch(data.features)
    assert scores.fraud_proba[data.labels == 1].mean() > 5 * scores.fraud_proba[data.labels == 0].mean()
    assert scores.anomaly[data.labels == 1].mean() > scores.anomaly[data.labels == 0].mean()


def test_retraining_is_reproducible(trained: tuple[TrainingReport, Path], tmp_path: Path) -> None:
    report, out = trained
    again = train(generate(40_000, fraud_rate=0.01, seed=11), tmp_path, TrainingConfig(trees=80))
    assert again.manifest.version == report.manifest.version
    assert again.folder.name == out.name == report.manifest.version
    assert (again.folder / "fraud_classifier.onnx").read_bytes() == (out / "fraud_classifier.onnx").read_bytes()


def test_split_is_time_ordered() -> None:
    data = generate(10_000, seed=1).time_ordered()
    split = time_split(data, TrainingConfig())
    time = data.features[:, 0]
    assert time[split.train].max() <= time[split.validation].min()
    assert time[split.validation].max() <= time[split.test].min()
    assert split.test.stop == 10_000
    assert split.how["by"] == "rows"  # two days, as the ULB file: too few for whole-day windows
    assert "spans 2.0 days" in split.how["why"]


def test_a_long_history_is_split_into_windows_of_whole_days_alike_for_validation_and_test() -> None:
    data = generate_history(60_000, days=14, seed=2).time_ordered()
    split = time_split(data, TrainingConfig())
    time = data.features[:, 0]
    assert split.how == {
        "by": "whole days",
        "train_days": split.how["train_days"],
        "validation_days": 3,
        "test_days": 3,
    }
    for part in (split.validation, split.test):
        covered = time[part.stop - 1] - time[part.start]
        assert 3 * 86_400 - 3_600 < covered <= 3 * 86_400  # three whole days, every hour of them
        hours = np.unique((time[part] // 3600) % 24)
        assert len(hours) == 24
    assert time[split.train].max() <= time[split.validation].min()


def test_a_split_with_too_few_frauds_is_refused_saying_how_many_are_needed(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="the train split has 0 frauds among 1200 transactions; at least 20"):
        train(generate(2_000, fraud_rate=0.0, seed=1), tmp_path)
    with pytest.raises(TrainingError, match="frauds among 400 transactions; at least 20 frauds"):
        train(generate(2_000, fraud_rate=0.02, seed=1), tmp_path)


def test_a_run_that_fails_a_check_publishes_nothing(tmp_path: Path) -> None:
    """The checks run on the staged set; a failure leaves no version, no staging folder, no pointer."""
    with pytest.raises(TrainingError, match="declines .* of validation .*nothing was published"):
        train(generate(40_000, fraud_rate=0.01, seed=11), tmp_path, TrainingConfig(trees=80, max_decline_share=-1))
    assert list((tmp_path / "versions").iterdir()) == []
    assert not (tmp_path / "CURRENT").exists()


def test_parity_failure_is_an_error() -> None:
    with pytest.raises(ParityError, match="differ by"):
        check_parity("m", np.array([0.1, 0.2]), np.array([0.1, 0.2001]))


def test_thresholds_hit_their_targets_on_validation() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(5_000) < 0.05).astype(np.int8)
    proba = np.clip(labels * 0.6 + rng.random(5_000) * 0.5, 0, 1)
    t = choose_thresholds(labels, proba, target_recall=0.9, target_precision=0.8)
    flagged = proba >= t.decline
    assert labels[flagged].mean() >= 0.8
    assert labels[proba >= t.review].sum() >= 0.9 * labels.sum()


def test_train_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fraudflow.cli", "train", "--synthetic-rows", "120000", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "PR-AUC" in result.stdout
    assert "logistic regression" in result.stdout
    assert "SYNTHETIC" in result.stderr
    # Published, then served: CURRENT names the new version, which the scorer of this registry loads.
    assert Manifest.read(resolve(tmp_path)).training_data.rows == 120_000
    version = (tmp_path / "CURRENT").read_text().strip()
    assert f"published version {version}" in result.stdout
    assert Scorer(tmp_path).models.version == version


def test_train_command_rejects_conflicting_sources(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fraudflow.cli", "train", "--synthetic-rows", "1000", "--data", "x.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "give one of --data, --synthetic-rows and --from-db" in result.stderr


@pytest.fixture(scope="module")
def trained_on_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingReport, Path]:
    root = tmp_path_factory.mktemp("history-models")
    report = train(generate_history(40_000, fraud_rate=0.01, seed=6), root, TrainingConfig(trees=120))
    return report, report.folder


def test_a_history_trains_on_behaviour_features_and_the_card_says_what_they_add(
    trained_on_history: tuple[TrainingReport, Path],
) -> None:
    report, out = trained_on_history
    manifest = Manifest.read(out)
    assert manifest.features == [*FEATURES[1:], *BEHAVIOUR]  # Time replaced by the behaviour features
    assert manifest.anomaly_detector.features == list(FEATURES[1:])  # the detector takes no missing values
    behaviour = manifest.metrics["behaviour"]
    with_, without = behaviour["pr_auc_with"], behaviour["pr_auc_without"]
    assert with_["frauds"] == without["frauds"] == manifest.metrics["test_frauds"]
    assert with_["low"] <= with_["value"] <= with_["high"]
    # Most frauds of the history show only through behaviour: the features must carry them.
    assert with_["low"] > without["high"]
    assert 0 < behaviour["fraud_value_caught"]["at_decline"] <= behaviour["fraud_value_caught"]["at_review"] <= 1
    assert "behaviour features (test" in format_report(report)


def test_a_history_model_serves_with_what_the_api_computes(trained_on_history: tuple[TrainingReport, Path]) -> None:
    """The rows as the API would send them, with the features the offline replay computed: the served model
    separates the frauds; without the features (the store down) it still answers."""
    _, out = trained_on_history
    data = generate_history(20_000, fraud_rate=0.02, seed=5).time_ordered()  # not the data it learnt from
    inputs = model_inputs(data)
    scorer = Scorer(out)
    scores = scorer.score_batch(inputs.full)
    assert scores.fraud_proba[data.labels == 1].mean() > 5 * scores.fraud_proba[data.labels == 0].mean()
    assert np.isfinite(scorer.score_batch(data.features).fraud_proba).all()


def test_the_real_file_layout_trains_without_behaviour_and_the_card_says_so(
    trained: tuple[TrainingReport, Path],
) -> None:
    report, _ = trained
    assert report.manifest.metrics["behaviour"]["available"] is False
    assert "no metadata" in report.manifest.metrics["behaviour"]["why"]
    assert "behaviour features: not used" in format_report(report)


def test_a_history_round_trips_through_its_csv(tmp_path: Path) -> None:
    data = generate_history(2_000, fraud_rate=0.02, seed=7).time_ordered()
    write_creditcard(data, tmp_path / "history.csv")
    again = load_creditcard(tmp_path / "history.csv")
    assert again.history is not None
    assert data.history is not None
    assert again.history.user_id == data.history.user_id
    assert again.history.device_id == data.history.device_id
    np.testing.assert_allclose(again.history.timestamp, data.history.timestamp, atol=1e-3)
    np.testing.assert_array_equal(again.labels, data.labels)
    assert again.frauds == data.frauds
