"""The synthetic generator and the creditcard.csv loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fraudflow.data.columns import AMOUNT_INDEX, FEATURES, TIME_INDEX
from fraudflow.data.dataset import DatasetError, load_creditcard, write_creditcard
from fraudflow.data.synthetic import DEFAULT_FRAUD_RATE, TWO_DAYS_S, generate


@pytest.fixture(scope="module")
def big() -> object:
    return generate(200_000, seed=3)


def test_shape_dtypes_and_fraud_rate(big) -> None:  # type: ignore[no-untyped-def]
    assert big.features.shape == (200_000, 30)
    assert big.features.dtype == np.float32
    assert big.labels.dtype == np.int8
    assert big.frauds == round(200_000 * DEFAULT_FRAUD_RATE)
    assert np.isfinite(big.features).all()


def test_deterministic_for_a_seed() -> None:
    a, b, c = generate(5_000, seed=1), generate(5_000, seed=1), generate(5_000, seed=2)
    assert np.array_equal(a.features, b.features)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.features, c.features)


def test_time_has_a_day_night_rhythm(big) -> None:  # type: ignore[no-untyped-def]
    time = big.features[:, TIME_INDEX]
    assert time.min() >= 0
    assert time.max() < TWO_DAYS_S
    hours = (time // 3600) % 24
    assert np.sum(hours == 16) > 5 * np.sum(hours == 4)


def test_amount_is_positive_and_skewed(big) -> None:  # type: ignore[no-untyped-def]
    amount = big.features[:, AMOUNT_INDEX]
    assert amount.min() >= 0
    assert amount.mean() > 2 * np.median(amount)


def test_signal_present_but_not_trivially_separable() -> None:
    data = generate(60_000, fraud_rate=0.01, seed=4)
    half = len(data.labels) // 2
    model = LogisticRegression(max_iter=500, class_weight="balanced").fit(
        data.features[:half, 1:29], data.labels[:half]
    )
    auc = roc_auc_score(data.labels[half:], model.predict_proba(data.features[half:, 1:29])[:, 1])
    assert 0.8 < auc < 0.995


def test_csv_round_trip(tmp_path: Path) -> None:
    data = generate(1_000, fraud_rate=0.05, seed=5).time_ordered()
    path = tmp_path / "cc.csv"
    write_creditcard(data, path)
    assert path.read_text().splitlines()[0] == ",".join(f'"{c}"' for c in (*FEATURES, "Class"))
    loaded = load_creditcard(path)
    assert np.array_equal(loaded.labels, data.labels)
    assert np.allclose(loaded.features, data.features, atol=1e-2)


def test_reads_the_real_files_quoted_class(tmp_path: Path) -> None:
    path = tmp_path / "cc.csv"
    header = ",".join(f'"{c}"' for c in (*FEATURES, "Class"))
    path.write_text(header + "\n" + ",".join(["0"] * 30) + ',"1"\n')
    assert load_creditcard(path).frauds == 1


def test_reads_a_bom_blank_lines_and_any_header_case(tmp_path: Path) -> None:
    """What a spreadsheet export of the real file looks like: a byte-order mark, `class` in lower case, a
    blank line in the middle and one at the end."""
    path = tmp_path / "exported.csv"
    header = ",".join((*FEATURES[:-1], "amount", "class"))
    rows = [",".join(["1"] * 30) + ",0", ",".join(["2"] * 30) + ",1"]
    path.write_bytes(("\ufeff" + header + "\n" + rows[0] + "\n\n" + rows[1] + "\n\n").encode())
    loaded = load_creditcard(path)
    assert (loaded.rows, loaded.frauds) == (2, 1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Time,V1,Amount,Class\n1,2,3,0\n", "missing"),
        (",".join((*FEATURES, "Class", "Extra")) + "\n", "unexpected"),
        (",".join((*FEATURES, "Class")) + "\n" + ",".join(["1"] * 30) + ",x\n", ":2: a value is not a number"),
        (",".join((*FEATURES, "Class")) + "\n" + ",".join(["1"] * 29) + "\n", "expected 31 values"),
        (",".join((*FEATURES, "Class")) + "\n" + ",".join(["1"] * 30) + ",2\n", "Class must be 0 or 1"),
        (",".join((*FEATURES, "Class")) + "\n" + ",".join(["nan"] * 30) + ",0\n", "NaN"),
        (",".join((*FEATURES, "Class")) + "\n", "no rows"),
    ],
)
def test_loader_errors_are_clear(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_creditcard(path)


def test_missing_file_suggests_synth(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="fraudflow synth"):
        load_creditcard(tmp_path / "nope.csv")


def test_a_history_with_a_bad_timestamp_names_the_line(tmp_path: Path) -> None:
    from fraudflow.data.history import generate_history

    path = tmp_path / "history.csv"
    write_creditcard(generate_history(200, fraud_rate=0.05, seed=1), path)
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[32] = "yesterday"  # the timestamp column, after the 31 reference columns and the event id
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"history.csv:4: a value is not a number"):
        load_creditcard(path)
