"""The request's `data` field: 30 comma-separated numbers (Time, V1..V28, Amount), spaces allowed."""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from fraudflow.data.columns import FEATURES, N_FEATURES

# Plain decimal or scientific notation only: no underscores, hex, or words (float() would accept those).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


class FeatureError(ValueError):
    """The `data` string is not 30 finite numbers; the message says which value and why."""


def _preview(token: str, limit: int = 20) -> str:
    return token if len(token) <= limit else token[:limit] + "..."


# The characters of plain decimals: float() then refuses every malformed token ("1e", "--1", "1 2", ""), and
# whatever it would take beyond plain decimals needs other characters: words (nan, inf), underscores, and
# other scripts' digits and spaces (U+0661, ARABIC-INDIC DIGIT ONE, is 1.0 to float()).
_DECIMAL_CHARACTERS = str.maketrans("", "", "0123456789+-.eE, \t")


def parse_features(data: str) -> npt.NDArray[np.float32]:
    if data.isascii() and not data.translate(_DECIMAL_CHARACTERS):
        # Fast path: the float32 range is left to check, and the slow path words any error.
        try:
            values = np.array([float(token) for token in data.split(",")])
        except ValueError:
            return _parse_slowly(data)
        if len(values) == N_FEATURES and np.abs(values).max() <= _FLOAT32_MAX:
            return values.astype(np.float32)
    return _parse_slowly(data)


def _parse_slowly(data: str) -> npt.NDArray[np.float32]:
    """Token by token, to say which value is wrong and why."""
    tokens = data.split(",")
    if len(tokens) != N_FEATURES:
        raise FeatureError(
            f"expected {N_FEATURES} comma-separated numbers ({FEATURES[0]}, V1..V28, {FEATURES[-1]}), got {len(tokens)}"
        )
    values = np.empty(N_FEATURES, dtype=np.float32)
    for index, raw in enumerate(tokens):
        token = raw.strip()
        where = f"value {index + 1} ({FEATURES[index]})"
        if not _NUMBER.fullmatch(token):
            if _NON_FINITE.fullmatch(token):
                raise FeatureError(f"{where} is {token}: values must be finite numbers")
            raise FeatureError(f"{where} is not a number: {_preview(token)!r}" if token else f"{where} is empty")
        value = float(token)
        if abs(value) > _FLOAT32_MAX:
            raise FeatureError(f"{where} is out of range for a 32-bit float: {_preview(token)}")
        values[index] = value
    return values
