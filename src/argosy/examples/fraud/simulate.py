"""The shipped example's data: deterministic synthetic card transactions with fraud and drift.

This module and the repository's ``contract.yaml`` are the fraud example; nothing else in the
package knows its columns. A fork on its own data sets ``source: files`` in its contract and may
delete this package (README, "Removing the example").

The generator draws customers and merchants, then transactions over a time window. Fraud is not one
separable rule: its rate depends on observable context (night hours, card-not-present channels,
risky merchants, customer history), and each fraudulent transaction follows one of four patterns
whose signatures appear only partly and with noise, while legitimate traffic shows the same signals
at a low rate. The same arguments always give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from argosy.files import staged

CURRENCIES = ("USD", "EUR", "GBP", "CAD", "MXN", "JPY")
MERCHANT_CATEGORIES = (
    "grocery",
    "restaurants",
    "fuel",
    "fashion",
    "electronics",
    "jewelry",
    "travel",
    "digital_goods",
    "gaming",
    "pharmacy",
)
CHANNELS = ("pos", "ecommerce", "mobile_app", "moto")
ENTRY_MODES = ("chip", "contactless", "magstripe", "manual", "ecommerce", "tokenized")
DEVICE_TYPES = ("none", "desktop", "mobile", "tablet")
#: Columns written as int64; every other numeric column is float64 and every string is an object.
INTEGER_COLUMNS = (
    "customer_txn_count_1h",
    "customer_txn_count_24h",
    "customer_txn_count_7d",
    "customer_distinct_merchants_24h",
    "customer_chargebacks_365d",
    "account_age_days",
    "card_age_days",
    "hour_of_day",
    "day_of_week",
    "merchant_age_days",
    "ip_country_mismatch",
    "billing_shipping_mismatch",
    "cvv_match",
    "new_device",
    "failed_logins_24h",
    "is_foreign_currency",
    "is_international",
    "is_fraud",
)
STRING_COLUMNS = (
    "transaction_id",
    "customer_id",
    "merchant_id",
    "currency",
    "merchant_category",
    "channel",
    "entry_mode",
    "device_type",
)

#: Drift scenarios for monitoring demos and tests; ``baseline`` is the training distribution.
SCENARIOS: dict[str, str] = {
    "baseline": "the training distribution",
    "merchant_mix": "digital goods, gaming and travel triple while groceries and fuel fall",
    "amount_inflation": "every amount and amount aggregate rises by 60%",
    "channel_shift": "mobile-app wallet payments take half of the traffic",
    "new_fraud_pattern": "bust-out fraud on old accounts through tokenized wallets, at 3x the rate",
}

FRAUD_PATTERNS = ("card_testing", "account_takeover", "skimming", "card_not_present")

_BASE_CATEGORY_MIX = np.array([0.24, 0.16, 0.12, 0.11, 0.08, 0.02, 0.05, 0.08, 0.05, 0.09])
_CATEGORY_AMOUNT = np.array([1.3, 0.9, 1.2, 1.6, 4.0, 6.0, 7.0, 0.35, 0.5, 0.8])
_CATEGORY_RISK = np.array([0.6, 0.6, 0.9, 1.0, 1.8, 2.2, 1.4, 2.0, 1.7, 0.5])
# P(channel | category): pos, ecommerce, mobile_app, moto
_CHANNEL_BY_CATEGORY = np.array(
    [
        [0.90, 0.05, 0.05, 0.00],
        [0.80, 0.05, 0.15, 0.00],
        [0.97, 0.00, 0.03, 0.00],
        [0.55, 0.35, 0.10, 0.00],
        [0.40, 0.45, 0.12, 0.03],
        [0.50, 0.40, 0.05, 0.05],
        [0.10, 0.60, 0.20, 0.10],
        [0.00, 0.55, 0.45, 0.00],
        [0.05, 0.55, 0.40, 0.00],
        [0.85, 0.10, 0.05, 0.00],
    ]
)
_HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 9, 10, 11, 10, 9, 9, 10, 11, 12, 11, 9, 7, 5, 3], dtype=float
)
_FX = np.array([1.0, 0.92, 0.79, 1.36, 17.1, 151.0])


class SimulationError(ValueError):
    """Invalid simulation arguments."""


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate.

    Attributes:
        rows: Number of transactions.
        seed: Random seed; the same spec always gives the same data.
        start: First day of the window (UTC).
        days: Length of the window in days.
        scenario: One of ``SCENARIOS``.
    """

    rows: int
    seed: int
    start: date
    days: int
    scenario: str = "baseline"

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise SimulationError(f"rows must be >= 1, got {self.rows}")
        if self.days < 1:
            raise SimulationError(f"days must be >= 1, got {self.days}")
        if self.seed < 0:
            raise SimulationError(f"seed must be >= 0, got {self.seed}")
        if self.scenario not in SCENARIOS:
            raise SimulationError(
                f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}"
            )

    @property
    def file_name(self) -> str:
        """The Parquet file name for this window, so periods sort and append cleanly."""
        suffix = "" if self.scenario == "baseline" else f"-{self.scenario}"
        return f"transactions-{self.start.isoformat()}{suffix}.parquet"


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one index per row of a row-stochastic matrix."""
    cumulative = probs.cumsum(axis=1)
    cumulative[:, -1] = 1.0
    return (rng.random(len(probs))[:, None] > cumulative).sum(axis=1)


def simulate(spec: SimulationSpec) -> pd.DataFrame:
    """Generate the transactions that ``spec`` describes, ordered by time.

    Args:
        spec: Size, seed, window and scenario.

    Returns:
        A DataFrame with the columns ``contract.yaml`` declares, in its ``raw_columns`` order.
    """
    rng = np.random.default_rng([spec.seed, list(SCENARIOS).index(spec.scenario)])
    n = spec.rows
    scenario = spec.scenario

    # Customers and merchants.
    n_customers = max(50, n // 25)
    n_merchants = max(40, n // 250)
    activity = rng.gamma(1.5, 1.0, n_customers)
    customer = rng.choice(n_customers, size=n, p=activity / activity.sum())
    customer_avg = np.exp(rng.normal(3.5, 0.6, n_customers))
    customer_age = np.minimum(rng.exponential(1100.0, n_customers) + 3, 9000).round()
    customer_risk = np.exp(rng.normal(0.0, 0.5, n_customers))
    customer_cb = rng.poisson(0.04 * customer_risk)
    merchant_category = rng.choice(len(MERCHANT_CATEGORIES), size=n_merchants, p=_BASE_CATEGORY_MIX)
    merchant_risk = np.clip(
        rng.beta(1.2, 40.0, n_merchants) * _CATEGORY_RISK[merchant_category], 0, 1
    )
    merchant_age = np.minimum(rng.exponential(1500.0, n_merchants) + 10, 20000).round()

    # Time: uniform days, diurnal hours, ordered.
    day = rng.integers(0, spec.days, n)
    hour = rng.choice(24, size=n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    seconds = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n)
    order = np.argsort(seconds, kind="stable")
    seconds, hour, customer = seconds[order], hour[order], customer[order]
    start = datetime.combine(spec.start, datetime.min.time(), tzinfo=UTC)
    timestamp = pd.to_datetime(start) + pd.to_timedelta(seconds, unit="s")
    day_of_week = timestamp.dayofweek.to_numpy()

    # Merchant category mix (drift: merchant_mix), then a merchant of that category.
    mix = _BASE_CATEGORY_MIX.copy()
    if scenario == "merchant_mix":
        mix *= np.array([0.4, 0.8, 0.4, 1.0, 1.2, 1.0, 3.0, 3.0, 3.0, 0.8])
        mix /= mix.sum()
    category = rng.choice(len(mix), size=n, p=mix)
    merchants_by_category = [np.flatnonzero(merchant_category == c) for c in range(len(mix))]
    merchant = np.empty(n, dtype=np.int64)
    for c, pool in enumerate(merchants_by_category):
        rows = np.flatnonzero(category == c)
        pool = pool if len(pool) else np.arange(n_merchants)
        merchant[rows] = pool[rng.integers(0, len(pool), len(rows))]

    channel_probs = _CHANNEL_BY_CATEGORY[category].copy()
    if scenario == "channel_shift":
        channel_probs[:, 2] += 1.2
        channel_probs /= channel_probs.sum(axis=1, keepdims=True)
    channel = _choice_rows(rng, channel_probs)
    pos, ecom, app, moto = (channel == i for i in range(4))
    remote = ecom | app | moto

    entry = np.where(
        pos,
        _choice_rows(rng, np.tile([0.58, 0.37, 0.04, 0.01, 0.0, 0.0], (n, 1))),
        np.where(moto, 3, np.where(ecom, np.where(rng.random(n) < 0.15, 5, 4), 5)),
    )
    device = np.where(
        pos | moto,
        0,
        np.where(app, 2, _choice_rows(rng, np.tile([0.0, 0.55, 0.35, 0.10], (n, 1)))),
    )
    travel = category == 6
    foreign = rng.random(n) < np.where(travel, 0.45, 0.04)
    currency = np.where(foreign, rng.choice([1, 2, 3, 4, 5], size=n), 0)
    international = (foreign | (rng.random(n) < 0.02)).astype(np.int8)

    avg30 = customer_avg[customer] * np.exp(rng.normal(0, 0.1, n))
    amount = customer_avg[customer] * np.exp(rng.normal(0, 0.75, n)) * _CATEGORY_AMOUNT[category]
    count_1h = rng.poisson(0.15, n)
    count_24h = count_1h + rng.poisson(1.5 * activity[customer])
    count_7d = count_24h + rng.poisson(7.0 * activity[customer])
    distinct_24h = np.minimum(count_24h, rng.poisson(1.0, n) + (count_24h > 0))
    since_last = rng.exponential(40_000.0 / activity[customer])
    since_last[rng.random(n) < 0.03] = np.nan
    distance = np.exp(rng.normal(2.0, 1.1, n)) + np.where(travel, np.exp(rng.normal(6.5, 1, n)), 0)
    distance[remote & (rng.random(n) < 0.08)] = np.nan
    ip_mismatch = (remote & (rng.random(n) < 0.03)).astype(np.int8)
    billing_mismatch = ((ecom | moto) & (rng.random(n) < 0.06)).astype(np.int8)
    cvv_match = np.where(remote, rng.random(n) > 0.01, 1).astype(np.int8)
    device_age = np.where(device == 0, np.nan, np.minimum(rng.exponential(400.0, n), 9000).round())
    new_device = ((device != 0) & (rng.random(n) < 0.04)).astype(np.int8)
    device_age[new_device == 1] = 0
    failed_logins = np.where(remote, rng.poisson(0.08, n), 0)
    email_risk = np.where(remote, rng.beta(1.2, 12.0, n), 0.0)
    card_age = np.minimum(rng.exponential(600.0, n), customer_age[customer]).round()

    # Fraud rate depends on observable context and the customer's latent risk.
    logit = (
        -5.6
        + np.log(customer_risk[customer])
        + 0.9 * ((hour <= 4) | (hour == 23))
        + 0.8 * remote
        + 0.5 * np.log(_CATEGORY_RISK[category])
        + 6.0 * merchant_risk[merchant]
        + 0.4 * (customer_cb[customer] > 0)
    )
    fraud = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    # Patterns follow the channel: card-present fraud is skimming, remote fraud one of the others.
    remote_pattern = rng.choice([0, 1, 3], size=n, p=[0.3, 0.3, 0.4])
    pattern = np.where(fraud, np.where(pos, 2, remote_pattern), -1)

    def pick(rows: np.ndarray, p: float) -> np.ndarray:
        return rows & (rng.random(n) < p)

    testing = pattern == 0
    amount = np.where(pick(testing, 0.8), rng.uniform(0.5, 6.0, n), amount)
    count_1h = count_1h + np.where(pick(testing, 0.7), rng.poisson(5, n), 0)
    count_24h = count_24h + np.where(testing, rng.poisson(10, n), 0)
    distinct_24h = distinct_24h + np.where(pick(testing, 0.6), rng.poisson(4, n), 0)
    new_device = np.where(pick(testing, 0.5), 1, new_device)

    takeover = pattern == 1
    new_device = np.where(pick(takeover, 0.75), 1, new_device)
    failed_logins = failed_logins + np.where(pick(takeover, 0.65), rng.poisson(4, n), 0)
    ip_mismatch = np.where(pick(takeover, 0.55), 1, ip_mismatch)
    amount = np.where(pick(takeover, 0.7), amount * np.exp(rng.normal(1.4, 0.5, n)), amount)
    billing_mismatch = np.where(pick(takeover & (ecom | moto), 0.5), 1, billing_mismatch)

    skimming = pattern == 2
    entry = np.where(pick(skimming, 0.6), 2, entry)
    distance = np.where(pick(skimming, 0.7), np.exp(rng.normal(6.0, 1.0, n)), distance)
    international = np.where(pick(skimming, 0.4), 1, international)
    count_24h = count_24h + np.where(pick(skimming, 0.5), rng.poisson(4, n), 0)

    cnp = pattern == 3
    cvv_match = np.where(pick(cnp, 0.45), 0, cvv_match)
    billing_mismatch = np.where(pick(cnp & (ecom | moto), 0.55), 1, billing_mismatch)
    email_risk = np.where(pick(cnp, 0.65), rng.beta(5.0, 2.0, n), email_risk)
    amount = np.where(pick(cnp, 0.5), amount * 2.5, amount)

    if scenario == "new_fraud_pattern":
        bust_out = (customer_age[customer] > 900) & (rng.random(n) < 0.025)
        channel = np.where(bust_out, 2, channel)
        entry = np.where(bust_out, 5, entry)
        device = np.where(bust_out, 2, device)
        device_age = np.where(bust_out, rng.integers(200, 900, n), device_age)
        amount = np.where(bust_out, amount * np.exp(rng.normal(1.0, 0.3, n)), amount)
        distinct_24h = distinct_24h + np.where(bust_out, rng.poisson(6, n), 0)
        count_24h = count_24h + np.where(bust_out, rng.poisson(8, n), 0)
        fraud = fraud | bust_out

    if scenario == "amount_inflation":
        amount, avg30 = amount * 1.6, avg30 * 1.6

    amount = np.clip(amount, 0.01, 99_000.0).round(2)
    count_7d = np.maximum(count_7d, count_24h)
    amount_sum_24h = (amount + count_24h * avg30 * np.exp(rng.normal(0, 0.3, n))).round(2)

    frame = pd.DataFrame(
        {
            "transaction_id": np.char.add(
                f"tx-{spec.start:%Y%m%d}-{spec.seed}-", np.arange(n).astype(str)
            ),
            "timestamp": timestamp.as_unit("us"),
            "customer_id": np.char.add("C", customer.astype(str)),
            "merchant_id": np.char.add("M", merchant.astype(str)),
            "amount": (amount * _FX[currency]).round(2),
            "amount_usd": amount,
            "amount_to_avg_ratio": (amount / avg30).round(4),
            "customer_avg_amount_30d": avg30.round(2),
            "customer_txn_count_1h": count_1h,
            "customer_txn_count_24h": count_24h,
            "customer_txn_count_7d": count_7d,
            "customer_amount_sum_24h": amount_sum_24h,
            "customer_distinct_merchants_24h": distinct_24h,
            "customer_chargebacks_365d": customer_cb[customer],
            "seconds_since_last_txn": np.minimum(since_last, 400 * 86_400.0).round(),
            "account_age_days": customer_age[customer],
            "card_age_days": card_age,
            "hour_of_day": hour,
            "day_of_week": day_of_week,
            "merchant_risk_score": merchant_risk[merchant].round(5),
            "merchant_age_days": merchant_age[merchant],
            "distance_from_home_km": np.minimum(distance, 20_000.0).round(2),
            "ip_country_mismatch": ip_mismatch,
            "billing_shipping_mismatch": billing_mismatch,
            "cvv_match": cvv_match,
            "device_age_days": device_age,
            "new_device": new_device,
            "failed_logins_24h": failed_logins,
            "email_domain_risk": email_risk.round(5),
            "is_foreign_currency": (currency != 0).astype(np.int8),
            "is_international": international,
            "currency": np.asarray(CURRENCIES)[currency],
            "merchant_category": np.asarray(MERCHANT_CATEGORIES)[category],
            "channel": np.asarray(CHANNELS)[channel],
            "entry_mode": np.asarray(ENTRY_MODES)[entry],
            "device_type": np.asarray(DEVICE_TYPES)[device],
            "is_fraud": fraud.astype(np.int8),
        }
    )
    return _with_dtypes(frame)


def _with_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast columns to the dtypes the example's contract promises (integers, floats, strings)."""
    for name in frame.columns:
        if name in STRING_COLUMNS:
            frame[name] = frame[name].astype(object)
        elif name in INTEGER_COLUMNS:
            frame[name] = frame[name].astype(np.int64)
        elif name != "timestamp":
            frame[name] = frame[name].astype(np.float64)
    return frame


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` so that the same data always gives the same bytes (stable DVC hash)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with staged(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=256_000)


def simulate_to(spec: SimulationSpec, out_dir: Path) -> Path:
    """Simulate and write one Parquet file under ``out_dir``; return its path."""
    path = out_dir / spec.file_name
    write_parquet(simulate(spec), path)
    return path


def parse_start(value: str) -> date:
    """Parse an ISO date, with a message naming the bad value."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise SimulationError(f"start must be an ISO date (YYYY-MM-DD), got {value!r}") from exc


def window_end(spec: SimulationSpec) -> date:
    """The first day after the simulated window."""
    return spec.start + timedelta(days=spec.days)
