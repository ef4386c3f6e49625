"""A synthetic data set shaped like the ULB credit-card set (which we cannot ship or download).

Same columns and dtypes; a realistic class imbalance; a day/night rhythm in Time over two days; a skewed,
log-normal Amount; correlated V-components of decreasing variance (like PCA components) where a handful carry
most of the fraud signal. Frauds vary in how strongly they show that signal and a few legitimate
transactions look suspicious too, so classes overlap and a good model stays well below a perfect PR-AUC.

Models trained on this data are demonstrations only: retrain on real data before trusting any score.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fraudflow.data.columns import N_FEATURES
from fraudflow.data.dataset import Dataset

DEFAULT_FRAUD_RATE = 492 / 284_807  # 0.172%, as in the real set
TWO_DAYS_S = 2 * 24 * 3600
_N_V = N_FEATURES - 2

# Mean shift of frauds, in standard deviations, on the components that carry the signal (1-based V index).
_FRAUD_SHIFT = {14: -4.0, 12: -3.4, 10: -3.0, 17: -3.4, 16: -2.4, 11: 2.6, 4: 2.6, 3: -2.4, 9: -2.0, 7: -1.8}
_SUSPICIOUS_LEGIT_SHARE = 0.004  # legitimate rows that drift along the fraud direction (hard negatives)


def _daily_intensity(seconds: npt.NDArray[np.float64], flatness: float) -> npt.NDArray[np.float64]:
    hours = (seconds / 3600.0) % 24.0
    day = (0.5 - 0.5 * np.cos(2 * np.pi * (hours - 4.0) / 24.0)) ** 1.5  # lowest at 04:00, highest at 16:00
    return flatness + (1.0 - flatness) * day


def _sample_times(rng: np.random.Generator, n: int, flatness: float) -> npt.NDArray[np.float64]:
    grid = np.arange(TWO_DAYS_S, dtype=np.float64)
    cdf = np.cumsum(_daily_intensity(grid, flatness))
    cdf /= cdf[-1]
    return np.floor(np.searchsorted(cdf, rng.random(n)).astype(np.float64))


def _correlation(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Blocks of correlated components (within a block 0.2-0.5), positive definite by construction."""
    loadings = np.zeros((_N_V, 4))
    for block, members in enumerate(np.array_split(rng.permutation(_N_V), 4)):
        loadings[members, block] = rng.uniform(0.45, 0.7, len(members))
    corr = loadings @ loadings.T
    np.fill_diagonal(corr, 1.0)
    return corr


def _components(
    rng: np.random.Generator, fraud: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """V1..V28 (PCA-like, correlated, of decreasing variance) and their unscaled latent values; the `fraud`
    rows are shifted along the fraud direction, by varying strengths."""
    rows = len(fraud)
    scale = np.linspace(1.95, 0.3, _N_V)
    latent = rng.standard_normal((rows, _N_V)) @ np.linalg.cholesky(_correlation(rng)).T
    direction = np.zeros(_N_V)
    for component, shift in _FRAUD_SHIFT.items():
        direction[component - 1] = shift
    strength = np.zeros(rows)
    strength[fraud] = rng.beta(2.0, 2.2, int(fraud.sum())) * 1.7
    latent[fraud] *= 1.6  # frauds are more spread out
    suspicious = ~fraud & (rng.random(rows) < _SUSPICIOUS_LEGIT_SHARE)
    strength[suspicious] = rng.uniform(0.2, 0.9, int(suspicious.sum()))
    latent += strength[:, None] * direction[None, :]
    return latent * scale, latent


def v_components(rng: np.random.Generator, signal: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """V1..V28 for rows whose fraud shows (`signal`) in the reference columns or not."""
    return _components(rng, signal)[0]


def generate(rows: int, *, fraud_rate: float = DEFAULT_FRAUD_RATE, seed: int = 0) -> Dataset:
    if rows < 1:
        raise ValueError("rows must be at least 1")
    if not 0.0 <= fraud_rate < 1.0:
        raise ValueError("fraud_rate must be in [0, 1)")
    rng = np.random.default_rng(seed)
    n_fraud = min(rows, round(rows * fraud_rate))
    labels = np.zeros(rows, dtype=np.int8)
    labels[rng.choice(rows, n_fraud, replace=False)] = 1
    fraud = labels == 1

    times = np.empty(rows)
    times[~fraud] = _sample_times(rng, rows - n_fraud, flatness=0.08)
    times[fraud] = _sample_times(rng, n_fraud, flatness=0.55)  # frauds keep later hours than customers

    v, latent = _components(rng, fraud)

    log_amount = rng.normal(3.0, 1.25, rows) + 0.35 * latent[:, 6] - 0.25 * latent[:, 19]
    card_testing = fraud & (rng.random(rows) < 0.45)
    log_amount[card_testing] = rng.normal(0.3, 0.7, int(card_testing.sum()))
    big = fraud & ~card_testing
    log_amount[big] = rng.normal(4.6, 1.0, int(big.sum()))
    amount = np.clip(np.round(np.exp(log_amount), 2), 0.0, 25_691.16)

    features = np.column_stack([times, v, amount]).astype(np.float32)
    return Dataset(features, labels, source=f"synthetic(rows={rows}, fraud_rate={fraud_rate:.6f}, seed={seed})")
