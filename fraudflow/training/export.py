"""ONNX export of the two models, and the parity check that guards it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType as MlFloatTensorType
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from fraudflow.manifest import ModelFile, file_sha256

INPUT = "features"
PARITY_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    pass


def _save(model: onnx.ModelProto, path: Path, kind: str, output: str, column: int | None) -> ModelFile:
    # Converters stamp random graph names and their own versions; pin both so a re-run is byte-identical.
    model.producer_name = "fraudflow"
    model.producer_version = ""
    model.doc_string = ""
    model.graph.name = kind
    path.write_bytes(model.SerializeToString(deterministic=True))
    opset = {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}
    return ModelFile(
        file=path.name,
        sha256=file_sha256(path),
        kind=kind,
        opset=opset,
        input=INPUT,
        output=output,
        output_column=column,
    )


def export_classifier(model: lgb.LGBMClassifier, path: Path) -> ModelFile:
    proto = convert_lightgbm(
        model, initial_types=[(INPUT, MlFloatTensorType([None, model.n_features_in_]))], zipmap=False, target_opset=15
    )
    # The converter declares the label output as (1,): onnxruntime then warns on every batch that fetches it.
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims and dims[0].dim_value == 1:
            dims[0].dim_param = "N"
    _thresholds_at_most(proto, model.booster_)
    return _save(proto, path, "lightgbm", "probabilities", 1)


def _nearest_float32(threshold: float) -> np.float32:
    with np.errstate(over="ignore"):  # LightGBM writes +-1e300 for "any value": +-inf in float32, still right
        return np.float32(threshold)


def _float32_at_most(threshold: float) -> float:
    """The largest float32 not above a float64 threshold. LightGBM and sklearn compare float32 inputs with
    float64 thresholds; ONNX keeps float32 ones, and a threshold rounded up would send an input equal to the
    rounded value the other way (seen with amounts in cents: 50.49 against 50.48999977111817)."""
    value = _nearest_float32(threshold)
    if float(value) > threshold:
        value = np.nextafter(value, np.float32(-np.inf))
    return float(value)


def _split_thresholds(booster: lgb.Booster) -> list[dict[tuple[int, float], float]]:
    """Per tree: (feature, threshold rounded to the nearest float32, as the converter writes it) -> the
    largest float32 not above the threshold."""
    trees = []
    for info in booster.dump_model()["tree_info"]:
        found: dict[tuple[int, float], float] = {}
        nodes = [info["tree_structure"]]
        while nodes:
            node = nodes.pop()
            if "split_feature" not in node:  # a leaf
                continue
            nodes += [node["left_child"], node["right_child"]]
            if node["decision_type"] != "<=":  # a categorical split compares categories: nothing to round
                continue
            threshold = float(node["threshold"])
            key, at_most = (int(node["split_feature"]), float(_nearest_float32(threshold))), _float32_at_most(threshold)
            if found.setdefault(key, at_most) != at_most:
                raise ParityError(f"fraud_classifier: two thresholds of one tree round to {key[1]} on feature {key[0]}")
        trees.append(found)
    return trees


def _thresholds_at_most(proto: onnx.ModelProto, booster: lgb.Booster) -> None:
    """Each split's float32 threshold in the exported trees made the largest float32 not above LightGBM's
    float64 one (the converter rounds to the nearest), so every float32 input goes the way LightGBM sends it."""
    ensemble = next(node for node in proto.graph.node if node.op_type == "TreeEnsembleClassifier")
    attrs = {attr.name: attr for attr in ensemble.attribute}
    trees = _split_thresholds(booster)
    values = attrs["nodes_values"].floats
    nodes = zip(attrs["nodes_modes"].strings, attrs["nodes_treeids"].ints, attrs["nodes_featureids"].ints, strict=True)
    for i, (mode, tree, feature) in enumerate(nodes):
        if mode != b"BRANCH_LEQ":
            continue
        if (at_most := trees[tree].get((feature, values[i]))) is None:
            raise ParityError(
                f"fraud_classifier: the converter wrote a threshold {values[i]} on feature {feature} of tree {tree} "
                "that LightGBM's tree does not have"
            )
        values[i] = at_most


def _isolation_forest_graph(model: IsolationForest) -> onnx.ModelProto:
    """One TreeEnsembleRegressor for all trees, then sklearn's 2^(-E[h]/c(psi)) transform.

    Each leaf carries its share of the mean path length, so the ensemble's SUM is E[h]/c(psi) directly.
    skl2onnx emits several nodes per tree instead, which costs ~1 ms per call in fixed overhead.
    """
    if model._max_features != model.n_features_in_:
        raise ValueError("export assumes the detector sees all features (max_features=1.0)")
    denominator = len(model.estimators_) * float(_average_path_length([model._max_samples])[0])
    attrs: dict[str, Any] = {
        key: []
        for key in (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_values",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "target_treeids",
            "target_nodeids",
            "target_ids",
            "target_weights",
        )
    }
    for tree_id, estimator in enumerate(model.estimators_):
        tree = estimator.tree_
        leaf_value = (
            model._decision_path_lengths[tree_id] + model._average_path_length_per_tree[tree_id] - 1.0
        ) / denominator
        for node in range(tree.node_count):
            leaf = tree.children_left[node] == -1
            attrs["nodes_treeids"].append(tree_id)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if leaf else int(tree.feature[node]))
            attrs["nodes_values"].append(0.0 if leaf else _float32_at_most(float(tree.threshold[node])))
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")  # sklearn goes left when x <= t
            attrs["nodes_truenodeids"].append(0 if leaf else int(tree.children_left[node]))
            attrs["nodes_falsenodeids"].append(0 if leaf else int(tree.children_right[node]))
            if leaf:
                attrs["target_treeids"].append(tree_id)
                attrs["target_nodeids"].append(node)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(float(leaf_value[node]))
    nodes = [
        helper.make_node(
            "TreeEnsembleRegressor",
            [INPUT],
            ["mean_depth"],
            domain="ai.onnx.ml",
            n_targets=1,
            aggregate_function="SUM",
            post_transform="NONE",
            **attrs,
        ),
        helper.make_node("Neg", ["mean_depth"], ["neg_depth"]),
        helper.make_node("Pow", ["two", "neg_depth"], ["anomaly"]),
        helper.make_node("Neg", ["anomaly"], ["score_samples"]),
        helper.make_node("Sub", ["score_samples", "offset"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "isolation_forest",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, model.n_features_in_])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 1])],
        initializer=[
            numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
            numpy_helper.from_array(np.array(model.offset_, dtype=np.float32), "offset"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 3)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def export_detector(model: IsolationForest, path: Path) -> ModelFile:
    return _save(_isolation_forest_graph(model), path, "isolation_forest", "scores", 0)


def onnx_output(path: Path, spec: ModelFile, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = np.asarray(session.run([spec.output], {spec.input: features})[0], dtype=np.float64)
    return out[:, spec.output_column] if spec.output_column is not None and out.ndim == 2 else out.ravel()


def check_parity(name: str, native: npt.NDArray[np.float64], exported: npt.NDArray[np.float64]) -> float:
    worst = float(np.max(np.abs(native - exported))) if native.size else 0.0
    if worst > PARITY_TOLERANCE:
        raise ParityError(f"{name}: ONNX and native predictions differ by {worst:.2e} (> {PARITY_TOLERANCE:.0e})")
    return worst
