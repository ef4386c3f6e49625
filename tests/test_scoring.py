"""The scorer: shipped models load and score; bad or tampered model sets are refused; reload is atomic."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fraudflow.data.synthetic import generate
from fraudflow.manifest import Manifest, file_sha256
from fraudflow.registry import default_models_dir
from fraudflow.scoring import Decision, ModelError, Scorer


@pytest.fixture
def models(tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(default_models_dir(), target)
    return target


def _edit_manifest(directory: Path, edit: dict[str, object], restamp: bool = True) -> None:
    """Edit fields of a manifest; `restamp`: then give it the version its new content implies, as training
    would (else it keeps a version that no longer matches, as a hand edit does)."""
    path = directory / "manifest.json"
    data = json.loads(path.read_text())
    for dotted, value in edit.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(json.dumps(data))
    if restamp:
        try:
            manifest = Manifest.read(directory)
        except ValueError:  # an invalid edit: the scorer reports it
            return
        manifest.model_copy(update={"version": manifest.content_version()}).write(directory)


def test_shipped_models_score_a_batch() -> None:
    scorer = Scorer()
    data = generate(2_000, fraud_rate=0.05, seed=9)
    scores = scorer.score_batch(data.features)
    assert len(scores) == 2_000
    assert scores.fraud_proba.dtype == np.float32
    assert scores.anomaly.dtype == np.float32
    assert ((scores.fraud_proba >= 0) & (scores.fraud_proba <= 1)).all()
    assert ((scores.anomaly >= 0) & (scores.anomaly <= 1)).all()
    policy = scorer.models.manifest.policy  # the shipped set decides by expected cost (test_policy.py)
    assert policy is not None
    expected = policy.decide(scores.fraud_proba, data.features[:, -1], scores.anomaly)
    assert np.array_equal(scores.decision, expected)
    assert scores.model_version == scorer.models.manifest.version
    assert {Decision(int(code)).label for code in np.unique(scores.decision)} <= {"approve", "review", "decline"}


def test_shipped_model_outputs_take_any_batch_size() -> None:
    """A (1,) output makes onnxruntime warn on every batch larger than one that fetches it."""
    scorer = Scorer()
    for model in (scorer.models.classifier, scorer.models.detector):
        for output in model.session.get_outputs():
            assert output.shape[0] != 1, (model.name, output.name, output.shape)


def test_single_row_equals_batched_row() -> None:
    scorer = Scorer()
    data = generate(64, seed=2).features
    batched = scorer.score_batch(data)
    single = scorer.score_batch(data[5:6])
    assert np.isclose(single.fraud_proba[0], batched.fraud_proba[5], atol=1e-6)
    assert np.isclose(single.anomaly[0], batched.anomaly[5], atol=1e-6)


def test_wrong_matrix_is_refused() -> None:
    with pytest.raises(ValueError, match="float32"):
        Scorer().score_batch(np.zeros((2, 30), dtype=np.float64))


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no manifest.json"):
        Scorer(tmp_path)


def test_tampered_file_is_refused(models: Path) -> None:
    path = models / "fraud_classifier.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="fraud_classifier: .* has sha256"):
        Scorer(models)


def test_missing_file_is_refused(models: Path) -> None:
    (models / "anomaly_detector.onnx").unlink()
    with pytest.raises(ModelError, match="anomaly_detector: file .* is missing"):
        Scorer(models)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"features": ["Time", "Amount"]}, r"the model takes \d+ features, the manifest lists 2"),
        ({"thresholds.review": 0.9, "thresholds.decline": 0.1}, "review threshold must not exceed"),
        ({"fraud_classifier.sha256": "xyz"}, "invalid at fraud_classifier.sha256"),
    ],
)
def test_invalid_manifest_is_refused(models: Path, edit: dict[str, object], message: str) -> None:
    _edit_manifest(models, edit)
    with pytest.raises(ModelError, match=message):
        Scorer(models)


def test_wrong_feature_count_is_refused(models: Path) -> None:
    manifest = Manifest.read(models)
    listed = len(manifest.inputs(manifest.anomaly_detector))
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["features"], ["scores"], keepdims=1)],
        "narrow",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, listed - 1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 1])],
    )
    path = models / "anomaly_detector.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    _edit_manifest(models, {"anomaly_detector.sha256": file_sha256(path)})
    with pytest.raises(ModelError, match=f"takes {listed - 1} features, the manifest lists {listed}"):
        Scorer(models)


def _replace_classifier(models: Path, nodes: list[onnx.NodeProto], input_type: int = TensorProto.FLOAT) -> None:
    """A classifier graph of `nodes` from `features` (as wide as the manifest lists) to a (n, 2)
    `probabilities` output."""
    manifest = Manifest.read(models)
    width = len(manifest.inputs(manifest.fraud_classifier))
    graph = helper.make_graph(
        nodes,
        "replaced",
        [helper.make_tensor_value_info("features", input_type, [None, width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
    )
    path = models / "fraud_classifier.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    _edit_manifest(models, {"fraud_classifier.file": path.name, "fraud_classifier.sha256": file_sha256(path)})


def _first_two_columns(source: str, output: str) -> list[onnx.NodeProto]:
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    return [
        helper.make_node("Constant", [], ["s"], value=starts),
        helper.make_node("Constant", [], ["e"], value=ends),
        helper.make_node("Constant", [], ["a"], value=axes),
        helper.make_node("Slice", [source, "s", "e", "a"], [output]),
    ]


def test_a_model_that_takes_float64_is_refused(models: Path) -> None:
    nodes = [
        helper.make_node("Cast", ["features"], ["f32"], to=TensorProto.FLOAT),
        *_first_two_columns("f32", "probabilities"),
    ]
    _replace_classifier(models, nodes, input_type=TensorProto.DOUBLE)
    with pytest.raises(ModelError, match=r"takes tensor\(double\), the scorer sends tensor\(float\)"):
        Scorer(models)


def test_a_classifier_answering_nan_is_refused(models: Path) -> None:
    # x / 0 - x / 0 is NaN for every input, including 0.
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [
        helper.make_node("Constant", [], ["z"], value=zero),
        helper.make_node("Div", ["features", "z"], ["inf"]),
        helper.make_node("Sub", ["inf", "inf"], ["nan"]),
        *_first_two_columns("nan", "probabilities"),
    ]
    _replace_classifier(models, nodes)
    with pytest.raises(ModelError, match="fraud_classifier: answers NaN"):
        Scorer(models)


def test_an_output_column_out_of_range_is_refused(models: Path) -> None:
    _edit_manifest(models, {"fraud_classifier.output_column": 7})
    with pytest.raises(ModelError, match="has 2 columns, the manifest reads column 7"):
        Scorer(models)


def test_a_manifest_that_is_not_utf8_is_refused_without_paths(models: Path) -> None:
    (models / "manifest.json").write_bytes(b'{"version": "\xff\xfe"}')
    with pytest.raises(ModelError, match="manifest.json is not UTF-8 text") as refused:
        Scorer(models)
    assert str(models) not in str(refused.value)


def test_reload_under_concurrent_scoring(models: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(models, other)
    # A different model set: same files, deciding by a probability band that reviews everything.
    _edit_manifest(other, {"thresholds.review": 0.0, "policy": None, "sample": None})
    new = Manifest.read(other).version
    scorer = Scorer(models)
    old = scorer.models.version
    assert new != old
    data = generate(256, seed=4).features
    seen: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def score_forever() -> None:
        while not stop.is_set():
            try:
                seen.add(scorer.score_batch(data[:32]).model_version)
            except BaseException as error:  # pragma: no cover - the assertion below reports it
                errors.append(error)

    workers = [threading.Thread(target=score_forever) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(5):
            scorer.reload(other)
            scorer.reload(models)
        scorer.reload(other)
    finally:  # a failed reload must fail the test, not leave the threads scoring forever
        stop.set()
        for worker in workers:
            worker.join()
    assert not errors
    assert seen <= {old, new}
    assert scorer.score_batch(data).model_version == new
    assert (scorer.score_batch(data).decision >= Decision.REVIEW).all()


def test_failed_reload_keeps_the_current_models(models: Path, tmp_path: Path) -> None:
    scorer = Scorer(models)
    before = scorer.models
    with pytest.raises(ModelError):
        scorer.reload(tmp_path / "empty")
    assert scorer.models is before
    assert Manifest.read(models).version == before.version


def test_a_model_reading_behaviour_features_is_served_with_them(tmp_path: Path) -> None:
    """The classifier reads V1..V28, Amount and the behaviour features (missing ones included), the detector
    the request columns alone; each gets its own columns from the scorer's layout."""
    from fraudflow.behaviour.definitions import NAMES
    from fraudflow.manifest import MODEL_INPUTS
    from fraudflow.training.export import export_classifier, export_detector
    from fraudflow.training.pipeline import TrainingConfig, fit_classifier, fit_detector

    rng = np.random.default_rng(0)
    raw = generate(3_000, fraud_rate=0.05, seed=1)
    behaviour = rng.normal(size=(3_000, len(NAMES))).astype(np.float32)
    behaviour[raw.labels == 1, 0] += 4.0  # user_count_1h: frauds come in bursts
    behaviour[rng.random(3_000) < 0.3] = np.nan  # the store was down for some
    inputs = [*MODEL_INPUTS[1:30], *NAMES]
    full = np.hstack([raw.features, behaviour])
    x = full[:, [MODEL_INPUTS.index(c) for c in inputs]]
    config = TrainingConfig(trees=40)
    target = tmp_path / "models"
    shutil.copytree(default_models_dir(), target)
    classifier = export_classifier(fit_classifier(x, raw.labels, config), target / "fraud_classifier.onnx")
    detector = export_detector(fit_detector(raw.features, config), target / "anomaly_detector.onnx")
    manifest = Manifest.read(target).model_copy(
        update={
            "features": inputs,
            "fraud_classifier": classifier,
            "anomaly_detector": detector.model_copy(update={"features": list(MODEL_INPUTS[:30])}),
        }
    )
    manifest.model_copy(update={"version": manifest.content_version()}).write(target)
    # The shipped explainer explains the shipped classifier, not this one: refused.
    with pytest.raises(ModelError, match="explainer: disagrees with fraud_classifier"):
        Scorer(target)
    manifest = manifest.model_copy(update={"explainer": None, "sample": None})  # neither describes this set
    manifest.model_copy(update={"version": manifest.content_version()}).write(target)
    scorer = Scorer(target)
    assert scorer.models.uses_behaviour
    with_behaviour = scorer.score_batch(full)
    assert with_behaviour.fraud_proba[raw.labels == 1].mean() > 3 * with_behaviour.fraud_proba[raw.labels == 0].mean()
    without = scorer.score_batch(raw.features)  # no behaviour given: all missing, still scored
    assert np.isfinite(without.fraud_proba).all()
    assert not np.allclose(without.fraud_proba, with_behaviour.fraud_proba)
    np.testing.assert_array_equal(without.anomaly, with_behaviour.anomaly)  # the detector reads none of them


def test_a_manifest_naming_an_unknown_input_is_refused(models: Path) -> None:
    _edit_manifest(models, {"features": [*Manifest.read(models).features[:29], "user_count_1y"]})
    with pytest.raises(ModelError, match="unknown: user_count_1y"):
        Scorer(models)


def test_a_manifest_edited_by_hand_is_refused_under_its_old_version(models: Path) -> None:
    """Thresholds set to 0 would decline everything under the old version's name: the audit trail would lie."""
    version = Manifest.read(models).version
    _edit_manifest(models, {"thresholds.review": 0.0, "thresholds.decline": 0.0}, restamp=False)
    with pytest.raises(ModelError, match=f"says version '{version}', its content is version"):
        Scorer(models)


def test_flagged_rows_are_explained_by_the_served_model_in_words() -> None:
    """LightGBM's own TreeSHAP on the booster the ONNX classifier came from: contributions (log-odds) and the
    bias add up to the served classifier's score (before calibration); only rows the model flagged are
    explained."""
    from fraudflow.decisions.explain import phrase
    from fraudflow.manifest import MODEL_INPUTS

    scorer = Scorer()
    explainer = scorer.models.explainer
    assert explainer is not None
    rng = np.random.default_rng(3)
    matrix = np.abs(rng.normal(size=(400, len(MODEL_INPUTS)))).astype(np.float32)
    matrix[:200, MODEL_INPUTS.index("user_count_1h")] = rng.integers(5, 30, 200)  # bursts
    for name, usual in scorer.models.manifest.typical.items():  # the others: what is usual
        matrix[200:, MODEL_INPUTS.index(name)] = usual
    scores = scorer.score_batch(matrix)
    flagged = scores.decision >= Decision.REVIEW
    assert 0 < flagged.sum() < len(matrix)
    assert sorted(scores.explanations) == np.flatnonzero(flagged).tolist()
    assert all(scores.explanations.values())
    part = scores.take(slice(100, 300))
    assert sorted(part.explanations) == np.flatnonzero(flagged[100:300]).tolist()
    for explained in scores.explanations.values():
        contributions = [c["contribution"] for c in explained]
        assert contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions)
        assert all(c["feature"] in MODEL_INPUTS and c["text"] for c in explained)
    full = np.asarray(explainer.booster.predict(scorer.models.classifier.inputs(matrix), pred_contrib=True))
    served = scorer.models.classifier.run(matrix)
    np.testing.assert_allclose(1 / (1 + np.exp(-full.sum(axis=1))), served, atol=1e-5)
    texts = [c["text"] for e in scores.explanations.values() for c in e]
    assert any("; usual: " in t for t in texts)
    assert phrase("user_count_1h", 7.0, 0.4) == "7 payments by the user in the last hour; usual: 0.4"
    assert phrase("user_km_from_previous", float("nan")) == "user_km_from_previous unknown"
