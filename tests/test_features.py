"""Parsing the request's `data` string: 30 finite numbers, or an error that says which and why."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudflow.features import FeatureError, parse_features

finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
thirty = st.lists(finite32, min_size=30, max_size=30)


@given(thirty, st.sampled_from([",", ", ", " , ", ",\t"]))
def test_round_trips_any_finite_float32_values(values: list[float], separator: str) -> None:
    parsed = parse_features(separator.join(repr(v) for v in values))
    assert parsed.dtype == np.float32
    assert np.array_equal(parsed, np.array(values, dtype=np.float32))


@given(st.integers(min_value=0, max_value=80).filter(lambda n: n != 30))
def test_wrong_count_names_the_count(count: int) -> None:
    with pytest.raises(FeatureError, match=f"expected 30 comma-separated numbers.*got {max(count, 1)}"):
        parse_features(",".join(["1"] * count))


@given(
    thirty,
    st.integers(min_value=0, max_value=29),
    st.sampled_from(["abc", "1_000", "0x10", "", "1.2.3", "--1", "1e", "true"]),
)
def test_bad_token_names_its_position(values: list[float], position: int, token: str) -> None:
    tokens = [repr(v) for v in values]
    tokens[position] = token
    with pytest.raises(FeatureError, match=f"value {position + 1} "):
        parse_features(", ".join(tokens))


@pytest.mark.parametrize("token", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_values_are_rejected(token: str) -> None:
    with pytest.raises(FeatureError, match="value 3 \\(V2\\) is .*finite"):
        parse_features(", ".join(["0"] * 2 + [token] + ["0"] * 27))


@pytest.mark.parametrize("token", ["1e39", "-3.5e38", "1e400"])
def test_values_beyond_float32_are_rejected(token: str) -> None:
    with pytest.raises(FeatureError, match="value 30 \\(Amount\\) is out of range"):
        parse_features(", ".join(["0"] * 29 + [token]))


def test_reference_client_style() -> None:
    values = [0.12, 50.3, 1, 0, 3] + [0.5] * 25
    assert parse_features(", ".join(str(v) for v in values))[1] == np.float32(50.3)
