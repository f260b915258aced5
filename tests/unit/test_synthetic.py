"""Synthetic data from a contract: deterministic, inside every declaration, learnable, drifts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from argosy.data.contract import Contract, load_contract
from argosy.data.synthetic import (
    DEFAULT_NULL_RATE,
    SyntheticError,
    label_logit,
    synthesize,
    write,
)

REPO = Path(__file__).resolve().parents[2]
CENSUS = REPO / "tests/fixtures/contracts/census.yaml"


@pytest.fixture(scope="module")
def census() -> Contract:
    return load_contract(CENSUS)


@pytest.fixture(scope="module")
def example() -> Contract:
    return load_contract(REPO / "contract.yaml")


@pytest.fixture(scope="module", params=["census", "example"])
def contract(request: pytest.FixtureRequest, census: Contract, example: Contract) -> Contract:
    return census if request.param == "census" else example


def test_census_fixture_differs_from_the_example(census: Contract, example: Contract) -> None:
    # Then the second contract differs from the example in each way issue 10 lists
    assert census.time is None
    assert census.time_range is None
    assert census.source == "files"
    assert census.id == "record-id"
    assert census.id != example.id
    assert census.label.column != example.label.column
    assert isinstance(census.label.positive, str)
    assert any("-" in name for name in census.features)
    nullable_text = [
        n for n, f in census.features.items() if f.type == "categorical" and f.nullable
    ]
    assert len(nullable_text) >= 2
    assert any(f.unseen == "other" for f in census.features.values())
    assert {f.type for f in census.features.values()} == {
        "integer",
        "numeric",
        "boolean",
        "categorical",
    }
    assert census.name == "income-classifier"
    assert 0.2 < census.label_rate_hint < 0.3


def test_same_arguments_same_bytes(tmp_path: Path, census: Contract) -> None:
    # Given the same arguments twice / Then the frames and the files are identical
    a = write(synthesize(census, 2000, seed=5), tmp_path / "a" / "data.parquet")
    b = write(synthesize(census, 2000, seed=5), tmp_path / "b" / "data.parquet")
    assert a.read_bytes() == b.read_bytes()
    # And another seed gives other data
    assert not synthesize(census, 2000, seed=6).equals(synthesize(census, 2000, seed=5))


def test_every_declaration_is_respected(contract: Contract) -> None:
    # Given a frame generated from the contract
    frame = synthesize(contract, 20_000, seed=1)
    # Then it has exactly the contract's raw columns, in order
    assert list(frame.columns) == list(contract.raw_columns)
    for name, feature in contract.features.items():
        column = frame[name]
        rate = column.isna().mean()
        # And nulls only where nullable, at the declared rate (else the default)
        if not feature.nullable:
            assert rate == 0, name
        else:
            expected = feature.null_rate if feature.null_rate is not None else DEFAULT_NULL_RATE
            assert rate == pytest.approx(expected, abs=0.01), name
        present = column.dropna()
        if feature.type == "categorical":
            assert column.dtype == object
            assert set(present) <= set(feature.values or []), name
            assert present.nunique() == len(feature.values or []), name
        elif feature.type == "boolean":
            assert set(present.unique()) <= {0, 1}, name
        else:
            assert feature.min is None or present.min() >= feature.min, name
            assert feature.max is None or present.max() <= feature.max, name
            assert present.nunique() > 1, name
            if feature.type == "integer":
                assert (present == present.round()).all(), name
                if not feature.nullable:
                    assert column.dtype == np.int64, name
            else:
                assert column.dtype == np.float64, name


def test_ids_times_and_labels(contract: Contract) -> None:
    # Given a frame / Then ids are unique strings, times inside the window and the label typed
    frame = synthesize(contract, 5000, seed=2, start=date(2026, 2, 1), days=10)
    if contract.id:
        assert frame[contract.id].is_unique
        assert all(isinstance(v, str) for v in frame[contract.id].head())
    if contract.time:
        times = frame[contract.time]
        assert str(times.dt.tz) == "UTC"
        assert times.is_monotonic_increasing
        assert times.min() >= pd.Timestamp("2026-02-01", tz="UTC")
        assert times.max() < pd.Timestamp("2026-02-11", tz="UTC")
    label = frame[contract.label.column]
    assert set(label.unique()) == {contract.label.positive, contract.label.negative}
    first = label.iloc[0]
    first = first.item() if isinstance(first, np.generic) else first
    assert type(first) is type(contract.label.positive)


def test_label_rate_is_near_the_hint(contract: Contract) -> None:
    frame = synthesize(contract, 40_000, seed=3)
    rate = contract.labels(frame).mean()
    assert rate == pytest.approx(contract.label_rate_hint, rel=0.15)
    assert contract.label_rate.min < rate < contract.label_rate.max


def test_the_encoder_accepts_it(contract: Contract) -> None:
    # Given a frame / When encoded as the model reads it / Then every row encodes
    frame = synthesize(contract, 3000, seed=4)
    matrix = contract.to_matrix(frame)
    assert matrix.shape == (3000, len(contract.features))
    assert matrix.dtype == np.float32
    nullable = [i for i, f in enumerate(contract.features.values()) if f.nullable]
    assert not np.isnan(np.delete(matrix, nullable, axis=1)).any()


def test_a_model_clears_the_census_floors(census: Contract) -> None:
    # Given ~8,000 rows as the end-to-end test uses, split 70/30
    frame = synthesize(census, 8000, seed=7)
    x, y = census.to_matrix(frame), census.labels(frame)
    model = HistGradientBoostingClassifier(random_state=0, max_iter=100).fit(x[:5600], y[:5600])
    scores = model.predict_proba(x[5600:])[:, 1]
    # Then the label rule is learnable well above the contract's floors
    assert average_precision_score(y[5600:], scores) > census.metric.floors["pr_auc"] + 0.15
    assert roc_auc_score(y[5600:], scores) > census.metric.floors["roc_auc"] + 0.1


def test_label_depends_on_the_rule(census: Contract) -> None:
    # Given a frame / Then positives have a higher rule logit than negatives
    frame = synthesize(census, 10_000, seed=8)
    logit, y = label_logit(census, frame), census.labels(frame)
    assert logit[y == 1].mean() > logit[y == 0].mean() + 1.0


def test_shift_drifts_the_features_not_the_rule(census: Contract) -> None:
    # Given a baseline and a shifted frame with the same seed
    base = synthesize(census, 20_000, seed=9)
    shifted = synthesize(census, 20_000, seed=9, shift=1.0)
    # Then categorical mixes turn around, numbers move up and booleans turn true more often
    mix_base = base["education"].value_counts(normalize=True)
    mix_shift = shifted["education"].value_counts(normalize=True).reindex(mix_base.index)
    assert (mix_base - mix_shift).abs().sum() / 2 > 0.3
    assert mix_shift.idxmax() == census.features["education"].values[-1]  # type: ignore[index]
    assert shifted["age"].mean() > base["age"].mean() + 5
    assert shifted["full-time"].mean() > base["full-time"].mean() + 0.15
    # And the rule is a fixed function of the values: the same rows give the same logit
    assert np.array_equal(label_logit(census, shifted), label_logit(census, shifted.copy()))
    assert census.to_matrix(shifted).shape == (20_000, len(census.features))


def test_unseen_values_go_to_the_other_bucket(census: Contract) -> None:
    # Given unseen values asked for / Then only `unseen: other` features get them, encoded other
    frame = synthesize(census, 5000, seed=10, unseen_rate=0.1)
    country = frame["native-country"].dropna()
    unseen = ~country.isin(census.features["native-country"].values or [])
    assert unseen.mean() == pytest.approx(0.1, abs=0.02)
    assert frame["sex"].isin(["Male", "Female"]).all()
    index = census.feature_names.index("native-country")
    spec = census.specs[index]
    codes = census.to_matrix(frame)[:, index]
    assert (codes == spec.other_code).sum() == unseen.sum()


def test_a_window_outside_time_range_is_refused(example: Contract) -> None:
    with pytest.raises(SyntheticError, match="outside the contract's time_range"):
        synthesize(example, 100, start=date(2019, 6, 1))
    with pytest.raises(SyntheticError, match="rows must be at least 1"):
        synthesize(example, 0)
