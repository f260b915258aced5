"""The simulator is deterministic, realistic enough to learn from, and drifts on demand."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from argosy.data.contract import load_contract
from argosy.examples.fraud.simulate import (
    SCENARIOS,
    SimulationError,
    SimulationSpec,
    simulate,
    simulate_to,
)

from ..conftest import REPO


def spec(**kw: object) -> SimulationSpec:
    base = {"rows": 20_000, "seed": 3, "start": date(2026, 2, 1), "days": 20}
    return SimulationSpec(**(base | kw))  # type: ignore[arg-type]


def test_same_spec_same_bytes(tmp_path: Path) -> None:
    # Given one spec written twice / Then the files are byte-identical (a stable DVC hash)
    a = simulate_to(spec(), tmp_path / "a")
    b = simulate_to(spec(), tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()


def test_different_seed_different_data() -> None:
    assert not simulate(spec(seed=1)).equals(simulate(spec(seed=2)))


def test_columns_ids_and_time_order(small_frame: pd.DataFrame) -> None:
    contract = load_contract(REPO / "contract.yaml")
    assert tuple(small_frame.columns) == contract.raw_columns
    assert len(contract.features) >= 25
    assert small_frame["transaction_id"].is_unique
    assert small_frame["timestamp"].is_monotonic_increasing
    assert str(small_frame["timestamp"].dt.tz) == "UTC"


def test_fraud_rate_in_band() -> None:
    frame = simulate(spec(rows=100_000))
    assert 0.005 <= frame["is_fraud"].mean() <= 0.02


def test_fraud_is_not_one_separable_rule() -> None:
    # Given a large sample / When each feature alone ranks transactions
    frame = simulate(spec(rows=100_000))
    contract = load_contract(REPO / "contract.yaml")
    matrix, labels = contract.to_matrix(frame), contract.labels(frame)
    best = 0.0
    for i in range(matrix.shape[1]):
        column = np.nan_to_num(matrix[:, i], nan=-1.0)
        best = max(
            best, average_precision_score(labels, column), average_precision_score(labels, -column)
        )
    # Then no single feature comes close to separating fraud (the model has to combine signals)
    assert best < 0.5


def test_several_patterns_leave_distinct_signatures() -> None:
    frame = simulate(spec(rows=100_000))
    fraud, legit = frame[frame.is_fraud == 1], frame[frame.is_fraud == 0]
    # card testing: tiny amounts; takeover: failed logins; skimming: magstripe; CNP: CVV mismatch
    assert (fraud.amount_usd < 6).mean() > 3 * (legit.amount_usd < 6).mean()
    assert fraud.failed_logins_24h.mean() > 5 * legit.failed_logins_24h.mean()
    assert (fraud.entry_mode == "magstripe").mean() > 3 * (legit.entry_mode == "magstripe").mean()
    assert (fraud.cvv_match == 0).mean() > 5 * (legit.cvv_match == 0).mean()


@pytest.mark.parametrize(
    ("scenario", "check"),
    [
        (
            "merchant_mix",
            lambda b, d: (
                (d.merchant_category == "digital_goods").mean()
                > 2 * (b.merchant_category == "digital_goods").mean()
            ),
        ),
        ("amount_inflation", lambda b, d: d.amount_usd.median() > 1.4 * b.amount_usd.median()),
        (
            "channel_shift",
            lambda b, d: (
                (d.channel == "mobile_app").mean() > 2 * (b.channel == "mobile_app").mean()
            ),
        ),
        ("new_fraud_pattern", lambda b, d: d.is_fraud.mean() > 1.5 * b.is_fraud.mean()),
    ],
)
def test_drift_scenarios_shift_the_data(scenario: str, check) -> None:
    base, drifted = simulate(spec(rows=50_000)), simulate(spec(rows=50_000, scenario=scenario))
    assert check(base, drifted)


def test_at_least_three_drift_scenarios() -> None:
    assert len([s for s in SCENARIOS if s != "baseline"]) >= 3


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rows": 0}, "rows must be >= 1"),
        ({"days": 0}, "days must be >= 1"),
        ({"scenario": "apocalypse"}, "unknown scenario 'apocalypse'"),
    ],
)
def test_invalid_arguments(kw: dict, message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        spec(**kw)
