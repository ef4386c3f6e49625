"""The in-process scorer: both ONNX models behind one call, hot-reloadable without downtime."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import ValidationError

from fraudflow.data.columns import AMOUNT_INDEX, N_FEATURES
from fraudflow.decisions.explain import Explainer
from fraudflow.manifest import (
    MANIFEST_FILE,
    MODEL_INPUTS,
    CostPolicy,
    Manifest,
    ModelFile,
    Thresholds,
    file_sha256,
)
from fraudflow.registry import default_models_root, resolve, resolve_challenger

EXPLAINER_TOLERANCE = 1e-4  # float32 ONNX trees against LightGBM's float64 ones


class ModelError(RuntimeError):
    """The model set cannot be served: missing or tampered file, bad manifest, wrong shape."""


class Decision(enum.IntEnum):
    APPROVE = 0
    REVIEW = 1
    DECLINE = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Scores:
    fraud_proba: npt.NDArray[np.float32]  # (n,) probability of fraud
    anomaly: npt.NDArray[np.float32]  # (n,) in [0, 1], higher = more anomalous
    decision: npt.NDArray[np.int8]  # (n,) Decision codes
    model_version: str
    thresholds: Thresholds  # the cuts the decisions came from, without a cost policy
    policy: CostPolicy | None  # the decision by expected cost, when the set has one
    # By row, the classifier's top contributions where the model flagged it (no entry: not flagged, or no
    # explainer). Sparse: a list per row of a large batch would cost the collector more than the scoring.
    explanations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.fraud_proba)

    def take(self, rows: slice | list[int]) -> Scores:
        """These rows' scores (a range, or positions)."""
        positions = range(len(self))[rows] if isinstance(rows, slice) else rows
        found = self.explanations
        explanations = {new: found[old] for new, old in enumerate(positions) if old in found} if found else {}
        return Scores(
            self.fraud_proba[rows],
            self.anomaly[rows],
            self.decision[rows],
            self.model_version,
            self.thresholds,
            self.policy,
            explanations,
        )


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # Micro-batches are small: one intra-op thread per session avoids thread hand-offs and leaves the other
    # cores to the event loop and the Kinesis publisher. No spinning: idle sessions must not burn CPU.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class _Model:
    def __init__(self, directory: Path, spec: ModelFile, name: str, threads: int, columns: list[str]) -> None:
        # Messages name files relative to the models directory: they reach API clients (409) and logs.
        path = directory / spec.file
        if not path.is_file():
            raise ModelError(f"{name}: file {spec.file} is missing")
        if (actual := file_sha256(path)) != spec.sha256:
            raise ModelError(
                f"{name}: {spec.file} has sha256 {actual[:12]}..., the manifest says {spec.sha256[:12]}..."
            )
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for unreadable models
            raise ModelError(
                f"{name}: onnxruntime cannot load {spec.file}: {str(error).replace(str(path), spec.file)}"
            ) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != spec.input:
            raise ModelError(f"{name}: expected one input named {spec.input!r}")
        if inputs[0].type != "tensor(float)":
            raise ModelError(f"{name}: the model takes {inputs[0].type}, the scorer sends tensor(float) (float32)")
        width = inputs[0].shape[-1]
        if width != len(columns):
            raise ModelError(f"{name}: the model takes {width} features, the manifest lists {len(columns)}")
        output = next((o for o in self.session.get_outputs() if o.name == spec.output), None)
        if output is None:
            raise ModelError(f"{name}: no output named {spec.output!r}")
        outputs = output.shape[-1] if len(output.shape) == 2 else None
        if spec.output_column is not None and isinstance(outputs, int) and not 0 <= spec.output_column < outputs:
            raise ModelError(
                f"{name}: output {spec.output!r} has {outputs} columns, the manifest reads column {spec.output_column}"
            )
        self.name = name
        self.spec = spec
        # Where its inputs are in the scorer's layout (MODEL_INPUTS); None: the 30 request columns as they are.
        where = [MODEL_INPUTS.index(c) for c in columns]
        self.columns = None if where == list(range(N_FEATURES)) else np.array(where)

    def inputs(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Its columns of a (n, 30) or (n, len(MODEL_INPUTS)) float32 matrix in the scorer's layout."""
        if self.columns is None:
            return matrix if matrix.shape[1] == N_FEATURES else np.ascontiguousarray(matrix[:, :N_FEATURES])
        return np.ascontiguousarray(matrix[:, self.columns])

    def run(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Score a matrix in the scorer's layout."""
        x = self.inputs(matrix)
        out = np.asarray(self.session.run([self.spec.output], {self.spec.input: x})[0], dtype=np.float32)
        if out.ndim == 2:
            return out[:, self.spec.output_column or 0]
        return out


class ModelSet:
    """One manifest's models, loaded and verified; immutable once built."""

    def __init__(self, directory: Path, threads: int = 1) -> None:
        self.directory = directory
        try:
            self.manifest = Manifest.read(directory)
        except FileNotFoundError:
            raise ModelError(f"no {MANIFEST_FILE} in the models directory; run `fraudflow train`") from None
        except UnicodeDecodeError:
            raise ModelError(f"{MANIFEST_FILE} is not UTF-8 text") from None
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ModelError(f"{MANIFEST_FILE} is invalid at {where or 'top level'}: {first['msg']}") from None
        self.classifier, self.detector = (
            _Model(directory, spec, name, threads, self.manifest.inputs(spec))
            for name, spec in (
                ("fraud_classifier", self.manifest.fraud_classifier),
                ("anomaly_detector", self.manifest.anomaly_detector),
            )
        )
        self.uses_behaviour = self.classifier.columns is not None or self.detector.columns is not None
        self.explainer = self._explainer()
        thresholds = self.manifest.thresholds
        self._cuts = np.array([thresholds.review, thresholds.decline], dtype=np.float32)
        self._check_on_sample()
        if (implied := self.manifest.content_version()) != self.manifest.version:
            raise ModelError(
                f"{MANIFEST_FILE} says version {self.manifest.version!r}, its content is version {implied!r}: it "
                "was edited after training; publish model sets with `fraudflow train`"
            )
        self._check_stored_sample()

    def _check_stored_sample(self) -> None:
        """The validation rows stored at training must get the same decisions now: the same name must mean
        the same behaviour, whatever changed underneath (a file, the runtime, the policy's code)."""
        spec = self.manifest.sample
        if spec is None:
            return
        path = self.directory / spec.file
        if not path.is_file() or file_sha256(path) != spec.sha256:
            raise ModelError(f"sample: {spec.file} is missing or does not match the manifest's sha256")
        with np.load(path) as stored:
            rows, expected = stored["rows"], stored["decisions"]
        differ = int(np.sum(self.score(np.ascontiguousarray(rows, dtype=np.float32)).decision != expected))
        if differ:
            raise ModelError(
                f"decides {differ} of {len(expected)} stored validation transactions differently than at training"
            )

    def _explainer(self) -> Explainer | None:
        spec = self.manifest.explainer
        if spec is None:
            return None
        path = self.directory / spec.file
        if not path.is_file():
            raise ModelError(f"explainer: file {spec.file} is missing")
        if file_sha256(path) != spec.sha256:
            raise ModelError(f"explainer: {spec.file} does not match the manifest's sha256")
        try:
            return Explainer(path, self.manifest.inputs(self.manifest.fraud_classifier), self.manifest.typical)
        except Exception as error:  # lightgbm raises its own LightGBMError for unreadable files
            raise ModelError(f"explainer: lightgbm cannot load {spec.file}: {type(error).__name__}") from None

    def _check_on_sample(self) -> None:
        """Run both models on a fixed sample (which also warms them up): a set that fails, or answers NaN or
        probabilities outside [0, 1], is refused here rather than on live traffic."""
        sample = np.random.default_rng(0).normal(size=(16, len(MODEL_INPUTS))).astype(np.float32)
        sample[0] = 0.0
        sample[1, N_FEATURES:] = np.nan  # behaviour unknown: the store was down
        for model in (self.classifier, self.detector):
            try:
                out = model.run(sample)
            except Exception as error:  # onnxruntime's own types, or an index error from a bad output column
                raise ModelError(f"{model.name}: fails on a sample batch: {type(error).__name__}: {error}") from None
            if out.shape != (len(sample),) or not np.isfinite(out).all():
                raise ModelError(f"{model.name}: answers NaN, infinite or misshapen scores on a sample batch")
        if not ((proba := self.classifier.run(sample)) >= 0).all() or not (proba <= 1).all():
            raise ModelError(f"{self.classifier.name}: probabilities outside [0, 1] on a sample batch")
        if self.explainer is not None:
            # The reasons must explain the model that decides: the booster and the ONNX graph agree.
            gap = np.abs(self.explainer.probabilities(self.classifier.inputs(sample)) - proba).max()
            if gap > EXPLAINER_TOLERANCE:
                raise ModelError(f"explainer: disagrees with {self.classifier.name} by {gap:.1e} on a sample batch")

    @property
    def version(self) -> str:
        return self.manifest.version

    def score(self, matrix: npt.NDArray[np.float32], explain: bool = True) -> Scores:
        """Score the request columns (n, 30), or those and the behaviour features (n, len(MODEL_INPUTS));
        `explain`: the top contributions of the rows the model flags (a challenger's are not needed)."""
        if matrix.dtype != np.float32 or matrix.ndim != 2 or matrix.shape[1] not in (N_FEATURES, len(MODEL_INPUTS)):
            raise ValueError(
                f"expected a float32 (n, {N_FEATURES}) or (n, {len(MODEL_INPUTS)}) matrix, got {matrix.dtype} "
                f"{matrix.shape}"
            )
        if matrix.shape[1] == N_FEATURES and self.uses_behaviour:  # none given: every behaviour feature unknown
            matrix = np.hstack([matrix, np.full((len(matrix), len(MODEL_INPUTS) - N_FEATURES), np.nan, np.float32)])
        raw = self.classifier.run(matrix)
        manifest = self.manifest
        anomaly = manifest.anomaly_scale.apply(self.detector.run(matrix))
        proba = raw if manifest.calibration is None else manifest.calibration.apply(raw)
        if manifest.policy is not None:
            decision = manifest.policy.decide(proba, matrix[:, AMOUNT_INDEX], anomaly)
        else:  # the cut points were chosen on the classifier's own scores
            decision = np.searchsorted(self._cuts, raw, side="right").astype(np.int8)
        explanations: dict[int, list[dict[str, Any]]] = {}
        if explain and self.explainer is not None and (flagged := np.flatnonzero(decision >= Decision.REVIEW)).size:
            rows = self.explainer.explain(self.classifier.inputs(matrix)[flagged])
            explanations = dict(zip(flagged.tolist(), rows, strict=True))
        return Scores(proba, anomaly, decision, self.version, manifest.thresholds, manifest.policy, explanations)


class Scorer:
    """Scores batches with the current model set; `reload()` swaps in a new one atomically.

    A call in flight keeps using the model set it started with, so a reload never fails or mixes requests.
    `directory` is a model registry (the version its CURRENT names is served, its CHALLENGER scored in
    shadow, both read again at each reload) or a set's own folder.
    """

    def __init__(self, directory: Path | None = None, threads: int = 1) -> None:
        self.threads = threads
        self.root = directory or default_models_root()
        self._models = ModelSet(resolve(self.root), threads)
        self.challenger: ModelSet | None = None
        self.challenger_error: str | None = None  # why the registry's challenger is not scored
        self._load_challenger()

    @property
    def models(self) -> ModelSet:
        return self._models

    def score_batch(self, matrix: npt.NDArray[np.float32]) -> Scores:
        return self._models.score(matrix)

    def _load_challenger(self) -> None:
        """A challenger that fails a load check is not scored, and never stops the champion from serving."""
        folder = resolve_challenger(self.root)
        try:
            challenger = None if folder is None else ModelSet(folder, self.threads)
        except ModelError as error:
            self.challenger, self.challenger_error = None, f"challenger {folder.name if folder else ''}: {error}"
            return
        if challenger is not None and challenger.version == self._models.version:
            challenger = None  # promoted meanwhile: nothing to compare
        self.challenger, self.challenger_error = challenger, None

    def reload(self, directory: Path | None = None) -> ModelSet:
        """Load and verify the new set (the registry's current version, or `directory`) fully before
        swapping; on any error the current set stays. The challenger is loaded again too."""
        fresh = ModelSet(resolve(directory or self.root), self.threads)
        self._models = fresh  # a single reference assignment: atomic for concurrent readers
        self._load_challenger()
        return fresh
