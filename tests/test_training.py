"""Training end to end on a small synthetic set: split, thresholds, parity, manifest, baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fraudflow.data.columns import FEATURES
from fraudflow.data.synthetic import generate
from fraudflow.manifest import Manifest, file_sha256
from fraudflow.scoring import Scorer
from fraudflow.training.evaluate import choose_thresholds
from fraudflow.training.export import ParityError, check_parity
from fraudflow.training.pipeline import TrainingConfig, TrainingError, TrainingReport, time_split, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingReport, Path]:
    out = tmp_path_factory.mktemp("models")
    return train(generate(40_000, fraud_rate=0.01, seed=11), out, TrainingConfig(trees=80)), out


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
    assert (tmp_path / "fraud_classifier.onnx").read_bytes() == (out / "fraud_classifier.onnx").read_bytes()


def test_split_is_time_ordered() -> None:
    data = generate(10_000, seed=1).time_ordered()
    split = time_split(data, TrainingConfig())
    time = data.features[:, 0]
    assert time[split.train].max() <= time[split.validation].min()
    assert time[split.validation].max() <= time[split.test].min()
    assert split.test.stop == 10_000


def test_split_without_frauds_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="only one class"):
        train(generate(2_000, fraud_rate=0.0, seed=1), tmp_path)


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
    assert Manifest.read(tmp_path).training_data.rows == 120_000


def test_train_command_rejects_conflicting_sources(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fraudflow.cli", "train", "--synthetic-rows", "1000", "--data", "x.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "either --data or --synthetic-rows" in result.stderr
