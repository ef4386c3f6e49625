"""The model input: the 30 columns of the ULB credit-card data set, in this order, as float32."""

from __future__ import annotations

FEATURES: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
LABEL = "Class"
N_FEATURES = len(FEATURES)
TIME_INDEX = 0
AMOUNT_INDEX = N_FEATURES - 1
