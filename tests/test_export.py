"""The exported classifier decides as LightGBM does, to the last float32 around every threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from fraudflow.training.export import export_classifier, onnx_output


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
