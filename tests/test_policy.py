"""The model's decision by expected cost: calibrated probabilities, the review capacity, the anomaly
detector admitted only where it lowers the cost, and the served set deciding exactly as its manifest says."""

from __future__ import annotations

import numpy as np

from fraudflow.manifest import MODEL_INPUTS, Calibration, CostPolicy
from fraudflow.scoring import Scorer
from fraudflow.training.policy import Costs, choose_policy, fit_calibration, policy_card, realised_cost

POLICY = CostPolicy(
    review_cost=5.0,
    chargeback_fee=15.0,
    false_decline_share=0.25,
    false_decline_fixed=2.0,
    review_capacity=0.02,
    capacity_penalty=0.0,
)


def test_the_cheapest_outcome_wins() -> None:
    proba = np.array([0.01, 0.10, 0.90, 0.01, 0.5])
    amount = np.array([20.0, 100.0, 100.0, 5000.0, 1.0])
    # approve 0.01 x 35 = 0.35 < 5; review: 0.1 x 115 = 11.5 > 5, declining 0.9 x 27 = 24.3;
    # decline: 0.1 x 27 = 2.7 < 5; a 5,000 payment at 1%: 50 to approve, 5 to review, 1,238 to decline;
    # 0.5 x 16 = 8 to approve, 0.5 x 2.25 = 1.125 to decline.
    assert POLICY.decide(proba, amount, np.zeros(5)).tolist() == [0, 1, 2, 1, 2]
    anomalous = POLICY.model_copy(update={"anomaly_review_from": 0.9})
    assert anomalous.decide(proba, amount, np.array([0.95, 0, 0, 0, 0])).tolist() == [1, 1, 2, 1, 2]


def test_realised_cost_counts_what_each_decision_cost() -> None:
    decision = np.array([0, 0, 1, 2, 2], dtype=np.int8)
    labels = np.array([0, 1, 0, 0, 1], dtype=np.int8)
    amount = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    costs = Costs()
    assert realised_cost(decision, labels, amount, costs).tolist() == [0.0, 25.0, 5.0, 4.5, 0.0]


def _validation(seed: int, n: int = 40_000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.01).astype(np.int8)
    proba = np.clip(rng.beta(1, 60, n) + labels * rng.beta(4, 3, n), 0, 1)
    amount = rng.lognormal(3, 1.2, n)
    anomaly = rng.random(n)
    return proba, amount, anomaly, labels


def test_reviews_stay_within_the_capacity() -> None:
    proba, amount, anomaly, labels = _validation(1)
    tight = Costs(review_cost=1.0, review_capacity=0.005)  # cheap reviews: many would be worth one
    policy, _ = choose_policy(proba, amount, anomaly, labels, tight)
    assert policy.capacity_penalty > 0
    assert np.mean(policy.decide(proba, amount, anomaly) == 1) <= 0.005
    loose, _ = choose_policy(proba, amount, anomaly, labels, Costs(review_cost=1.0, review_capacity=0.5))
    assert loose.capacity_penalty == 0.0


def test_the_anomaly_detector_joins_only_where_it_lowers_the_cost() -> None:
    proba, amount, anomaly, labels = _validation(2)
    hidden = (labels == 1) & (np.arange(len(labels)) % 3 == 0)
    proba = np.where(hidden, 0.001, proba)  # a third of the frauds the classifier cannot see
    policy, finding = choose_policy(proba, amount, anomaly, labels, Costs())  # an anomaly score of noise
    assert policy.anomaly_review_from is None
    assert not finding["joins_decision"]
    anomaly = np.where(hidden, 0.999, anomaly * 0.9)  # the frauds the classifier misses are the anomalous ones
    policy, finding = choose_policy(proba, amount, anomaly, labels, Costs())
    assert finding["joins_decision"]
    assert finding["validation_cost_change"]["high"] < 0
    assert policy.anomaly_review_from is not None


def test_platt_calibration_lowers_overconfident_probabilities() -> None:
    rng = np.random.default_rng(3)
    truth = rng.beta(1, 30, 50_000)
    labels = (rng.random(50_000) < truth).astype(np.int8)
    inflated = np.clip(truth * 5, 0, 0.999)  # class weights inflate the scores
    calibration = fit_calibration(inflated, labels)
    calibrated = calibration.apply(inflated.astype(np.float32))
    assert abs(calibrated.mean() - labels.mean()) < 0.1 * labels.mean()
    assert np.mean((calibrated - labels) ** 2) < np.mean((inflated - labels) ** 2)
    assert Calibration(slope=1.0, intercept=0.0).apply(np.array([0.25], dtype=np.float32))[0] == np.float32(0.25)


def test_the_card_gives_each_policy_with_intervals() -> None:
    proba, amount, anomaly, labels = _validation(4, 5_000)
    card = policy_card(
        {"cost_policy": POLICY.decide(proba, amount, anomaly), "probability_policy": (proba > 0.5).astype(np.int8)},
        labels,
        amount,
        Costs(),
    )
    for name in ("cost_policy", "probability_policy"):
        for metric in ("frauds_caught", "fraud_value_caught", "reviews_per_1000", "false_declines_per_1000"):
            value = card[name][metric]
            assert value["low"] <= value["value"] <= value["high"]
    assert card["frauds"] == int(labels.sum())


def test_the_served_set_decides_as_its_policy_says() -> None:
    scorer = Scorer()
    manifest = scorer.models.manifest
    assert manifest.policy is not None
    assert manifest.calibration is not None
    rng = np.random.default_rng(5)
    matrix = np.abs(rng.normal(size=(500, len(MODEL_INPUTS)))).astype(np.float32)
    matrix[:, MODEL_INPUTS.index("Amount")] = rng.lognormal(3, 1.5, 500)
    scores = scorer.score_batch(matrix)
    amount = matrix[:, MODEL_INPUTS.index("Amount")]
    expected = manifest.policy.decide(scores.fraud_proba, amount, scores.anomaly)
    np.testing.assert_array_equal(scores.decision, expected)
    assert len(set(scores.decision.tolist())) > 1
