"""A synthetic transaction history: persistent users with habits, and fraud that behaves like fraud.

`synthetic.py` draws independent rows; fraud engines learn from histories. Here each user has a home city, one
or two devices, a home IP address, a spending habit and a daily rhythm, and pays about twice a day over the
period. Frauds follow published patterns, and each is visible through one kind of signal only, as in reality:

- `columns` (a share of frauds): the card's own data (the 30 reference columns) carries the signal, from the
  victim's usual device and home;
- `card_testing`: a burst of tiny payments within minutes from a device and IP the victim never used;
- `account_takeover`: one to three large payments from a new device in another country;
- `impossible_travel`: a payment from another continent within the hour of one at home;
- `mule_device`: one device paying for many users within a day.

The last four have reference columns drawn like a legitimate payment's: only behaviour features reveal them.
It still emits the 30 reference columns (Time is seconds since the first payment, as in the ULB set), plus
the metadata the API receives.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraudflow.data.dataset import Dataset, History
from fraudflow.data.synthetic import DEFAULT_FRAUD_RATE, v_components
from fraudflow.simulation.population import CITIES

START_S = 1_764_547_200.0  # 2025-12-01T00:00:00Z
SCENARIOS = {"columns": 0.35, "card_testing": 0.25, "account_takeover": 0.2, "impossible_travel": 0.1}
SCENARIOS["mule_device"] = 1.0 - sum(SCENARIOS.values())
PAYMENTS_PER_USER_DAY = 2.0


@dataclass
class _Rows:
    """Transactions as columns, appended scenario by scenario."""

    time_s: list[float]
    user: list[int]
    device: list[str]
    ip: list[str]
    city: list[int]
    amount: list[float]
    fraud: list[int]
    signal: list[bool]  # the reference columns carry the fraud signal

    def add(
        self, t: float, user: int, device: str, ip: str, city: int, amount: float, fraud: bool, signal: bool
    ) -> None:
        self.time_s.append(t)
        self.user.append(user)
        self.device.append(device)
        self.ip.append(ip)
        self.city.append(city)
        self.amount.append(round(max(amount, 0.01), 2))
        self.fraud.append(int(fraud))
        self.signal.append(signal)


def _hour_of_day(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    """Hours of legitimate payments: few at night, most in the afternoon."""
    hours = np.arange(24)
    weight = 0.05 + (0.5 - 0.5 * np.cos(2 * np.pi * (hours - 4) / 24)) ** 1.5
    return rng.choice(hours, n, p=weight / weight.sum()) + rng.random(n)


def _ip(rng: np.random.Generator) -> str:
    # Documentation ranges (TEST-NET) only: never a real person's address.
    return f"{rng.choice(['192.0.2', '198.51.100', '203.0.113'])}.{rng.integers(1, 255)}"


def generate_history(rows: int, *, fraud_rate: float = DEFAULT_FRAUD_RATE, seed: int = 0, days: int = 14) -> Dataset:
    if rows < 100:
        raise ValueError("rows must be at least 100")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError("fraud_rate must be in [0, 0.5)")
    rng = np.random.default_rng(seed)
    n_frauds = round(rows * fraud_rate)
    n_users = max(10, round((rows - n_frauds) / (PAYMENTS_PER_USER_DAY * days)))
    homes = rng.integers(0, len(CITIES), n_users)
    devices = [[f"dev-{u}-{k}" for k in range(int(rng.integers(1, 3)))] for u in range(n_users)]
    ips = [_ip(rng) for _ in range(n_users)]
    habits = rng.normal(3.2, 0.6, n_users)  # each user's usual log-amount
    out = _Rows([], [], [], [], [], [], [], [])

    users = rng.integers(0, n_users, rows - n_frauds)
    day = rng.integers(0, days, len(users))
    times = START_S + day * 86_400.0 + _hour_of_day(rng, len(users)) * 3600.0
    for user, t in zip(users.tolist(), times.tolist(), strict=True):
        device = devices[user][int(rng.integers(0, len(devices[user])))]
        ip = ips[user] if rng.random() < 0.85 else _ip(rng)  # sometimes a phone's or a café's network
        out.add(t, user, device, ip, int(homes[user]), float(np.exp(rng.normal(habits[user], 0.7))), False, False)

    counts = rng.multinomial(n_frauds, list(SCENARIOS.values()))
    budget = dict(zip(SCENARIOS, counts.tolist(), strict=True))
    span = (START_S, START_S + days * 86_400.0)
    while budget["columns"] > 0:
        user = int(rng.integers(0, n_users))
        t = float(rng.uniform(*span))
        amount = float(np.exp(rng.normal(4.0, 1.1)))
        out.add(t, user, devices[user][0], ips[user], int(homes[user]), amount, True, True)
        budget["columns"] -= 1
    while budget["card_testing"] > 0:
        user, t = int(rng.integers(0, n_users)), float(rng.uniform(*span))
        device, ip = f"dev-ct-{rng.integers(1 << 40)}", _ip(rng)
        for _ in range(min(budget["card_testing"], int(rng.integers(5, 16)))):
            t += float(rng.exponential(40.0))
            out.add(t, user, device, ip, int(homes[user]), float(rng.uniform(0.5, 3.0)), True, False)
            budget["card_testing"] -= 1
    while budget["account_takeover"] > 0:
        user, t = int(rng.integers(0, n_users)), float(rng.uniform(*span))
        city = int(rng.choice([c for c in range(len(CITIES)) if CITIES[c][0] != CITIES[homes[user]][0]]))
        device, ip = f"dev-ato-{rng.integers(1 << 40)}", _ip(rng)
        for _ in range(min(budget["account_takeover"], int(rng.integers(1, 4)))):
            t += float(rng.exponential(600.0))
            amount = float(np.exp(habits[user] + rng.uniform(1.2, 2.5)))
            out.add(t, user, device, ip, city, amount, True, False)
            budget["account_takeover"] -= 1
    while budget["impossible_travel"] > 0:
        user, t = int(rng.integers(0, n_users)), float(rng.uniform(*span))
        home = int(homes[user])
        out.add(t, user, devices[user][0], ips[user], home, float(np.exp(habits[user])), False, False)
        far = [c for c in range(len(CITIES)) if abs(CITIES[c][4] - CITIES[home][4]) > 60]
        t += float(rng.uniform(300, 1800))
        amount = float(np.exp(habits[user] + 1.0))
        out.add(t, user, devices[user][0], _ip(rng), int(rng.choice(far)), amount, True, False)
        budget["impossible_travel"] -= 1
    while budget["mule_device"] > 0:
        device, ip, t = f"dev-mule-{rng.integers(1 << 40)}", _ip(rng), float(rng.uniform(*span))
        for _ in range(min(budget["mule_device"], int(rng.integers(8, 21)))):
            user = int(rng.integers(0, n_users))
            t += float(rng.exponential(1800.0))
            out.add(t, user, device, ip, int(homes[user]), float(np.exp(rng.normal(4.5, 0.5))), True, False)
            budget["mule_device"] -= 1
    return _dataset(out, rng, seed, fraud_rate)


def _dataset(out: _Rows, rng: np.random.Generator, seed: int, fraud_rate: float) -> Dataset:
    order = np.argsort(np.asarray(out.time_s), kind="stable")
    time_s = np.asarray(out.time_s)[order]
    labels = np.asarray(out.fraud, dtype=np.int8)[order]
    signal = np.asarray(out.signal)[order]
    amount = np.asarray(out.amount)[order]
    v = v_components(rng, signal)
    features = np.column_stack([time_s - time_s[0], v, amount]).astype(np.float32)
    city = [CITIES[c] for c in np.asarray(out.city)[order].tolist()]
    jitter = rng.uniform(-0.05, 0.05, (len(order), 2))
    history = History(
        event_id=[str(uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i)) for i in range(len(order))],
        timestamp=time_s,
        user_id=[f"user_{out.user[i]:06d}" for i in order.tolist()],
        device_id=[out.device[i] for i in order.tolist()],
        ip_address=[out.ip[i] for i in order.tolist()],
        country=[c[0] for c in city],
        city=[c[2] for c in city],
        latitude=np.round(np.array([c[3] for c in city]) + jitter[:, 0], 4),
        longitude=np.round(np.array([c[4] for c in city]) + jitter[:, 1], 4),
    )
    source = f"synthetic history(rows={len(order)}, fraud_rate={fraud_rate:.6f}, seed={seed})"
    return Dataset(features, labels, source=source, history=history)
