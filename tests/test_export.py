"""The exported classifier decides as LightGBM does, to the last float32 around every threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import onnx
import pytest

from fraudflow.training.export import (
    ParityError,
    _split_thresholds,
    _thresholds_at_most,
    export_classifier,
    onnx_output,
)


def _splits(node: dict[str, Any]) -> list[tuple[int, float]]:
    if "split_feature" not in node:
        return []
    return [(node["split_feature"], node["threshold"]), *_splits(node["left_child"]), *_splits(node["right_child"])]


def test_inputs_next_to_every_threshold_go_the_way_lightgbm_sends_them(tmp_path: Path) -> None:
    # Amounts in cents, read as float32: LightGBM's float64 thresholds fall between neighbouring float32 values,
    # where a threshold rounded to the nearest float32 would send an input equal to it the other way.
    rng = np.random.default_rng(3)
    x = rng.normal(50, 10, size=(3_000, 2)).round(2).astype(np.float32)
    y = (x[:, 0] + rng.normal(0, 5, size=len(x)) > 55).astype(np.int8)
    model = lgb.LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1).fit(x, y)
    spec = export_classifier(model, tmp_path / "classifier.onnx")

    rows = []
    for tree in model.booster_.dump_model()["tree_info"]:
        for feature, threshold in _splits(tree["tree_structure"]):
            nearest = np.float32(threshold)
            for value in (np.nextafter(nearest, -np.inf), nearest, np.nextafter(nearest, np.inf)):
                row = np.median(x, axis=0)
                row[feature] = value
                rows.append(row)
    boundary = np.array(rows, dtype=np.float32)
    assert len(boundary) > 300

    native = np.asarray(model.predict_proba(boundary))[:, 1]
    exported = onnx_output(tmp_path / "classifier.onnx", spec, boundary)
    np.testing.assert_allclose(exported, native, atol=1e-6)


class _Trees:
    """A booster's dump and nothing else: the trees the export maps thresholds from."""

    def __init__(self, *thresholds: float) -> None:
        leaf = {"leaf_value": 0.0}
        node: dict[str, Any] = leaf
        for threshold in thresholds:
            node = {
                "split_feature": 0,
                "decision_type": "<=",
                "threshold": threshold,
                "left_child": node,
                "right_child": leaf,
            }
        self.tree = node

    def dump_model(self) -> dict[str, Any]:
        return {"tree_info": [{"tree_structure": self.tree}]}


def test_thresholds_that_cannot_be_mapped_fail_the_export_with_a_parity_error(tmp_path: Path) -> None:
    # Two thresholds on either side of one float32 value round to it, but want different float32 values.
    value = float(np.float32(50.49))
    quarter = float(np.spacing(np.float32(value))) / 4
    with pytest.raises(ParityError, match="two thresholds of one tree round to"):
        _split_thresholds(cast(lgb.Booster, _Trees(value - quarter, value + quarter)))

    # A threshold the converter wrote that LightGBM's tree does not have.
    x = np.random.default_rng(4).normal(size=(500, 2)).astype(np.float32)
    model = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1).fit(x, (x[:, 0] > 0).astype(np.int8))
    export_classifier(model, tmp_path / "classifier.onnx")
    proto = onnx.load(tmp_path / "classifier.onnx")
    ensemble = next(node for node in proto.graph.node if node.op_type == "TreeEnsembleClassifier")
    attrs = {attr.name: attr for attr in ensemble.attribute}
    attrs["nodes_values"].floats[list(attrs["nodes_modes"].strings).index(b"BRANCH_LEQ")] = 12345.0
    with pytest.raises(ParityError, match="threshold 12345.0 on feature"):
        _thresholds_at_most(proto, model.booster_)
