"""Seeded synthetic data generated from a data contract (the demo and the tests after a fork).

Every column the contract declares is drawn from its declaration alone: a numeric or integer
feature inside its ``min``/``max`` (a bell inside narrow ranges, a log-normal one inside wide
non-negative ones such as amounts and counts), a categorical one from its ``values`` with skewed
frequencies, a boolean one true about 30% of the time, each missing at its ``null_rate`` (5% when
only ``nullable``). The id is a unique string, the event time spreads over a window inside
``time_range``, other columns are simple strings or numbers. The label follows a fixed logistic
rule of three numeric-like features and one categorical (:func:`label_logit`), its intercept set
so the positive rate is near :attr:`Contract.label_rate_hint`; a model can learn it.

``shift`` drifts the features (numbers move up their range, the categorical mix turns towards the
rare values, booleans turn true more often) while the rule stays: the demo's drift. The same
arguments always give the same frame, and :func:`write` the same bytes.
"""

from __future__ import annotations

import math
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from argosy.data.contract import Contract, FeatureContract

#: First day of the window when ``start`` is not given (or the contract's time_range.min when
#: that day does not fit inside it).
DEFAULT_START = date(2026, 1, 1)
#: Range of a numeric or integer feature that declares neither bound.
DEFAULT_RANGE = (0.0, 100.0)
#: Null rate of a nullable feature that declares no ``null_rate``.
DEFAULT_NULL_RATE = 0.05
#: Share of true values of a boolean feature (before ``shift``).
BOOLEAN_RATE = 0.3
#: Fixed row-group size of :func:`write` (part of what makes its bytes reproducible).
ROW_GROUP_SIZE = 256_000
_WIDE = 1000.0  # a non-negative range wider than this is drawn log-normal
_NUMERIC_WEIGHTS = (2.0, -1.6, 1.2, 1.0)
_CATEGORY_WEIGHT = 1.5


class SyntheticError(ValueError):
    """The arguments do not fit the contract (e.g. a window outside time_range)."""


def _rng(*keys: int | str) -> np.random.Generator:
    """A generator keyed by names as well as numbers (stable across runs and feature orders)."""
    entropy = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(entropy)


def _bounds(feature: FeatureContract) -> tuple[float, float]:
    lo = None if feature.min is None else float(feature.min)
    hi = None if feature.max is None else float(feature.max)
    if lo is None and hi is None:
        return DEFAULT_RANGE
    if hi is None:
        return lo, lo + DEFAULT_RANGE[1]  # type: ignore[operator]
    if lo is None:
        return (0.0 if hi > 0 else hi - DEFAULT_RANGE[1]), hi
    return lo, hi


def _lognormal_params(lo: float, hi: float) -> tuple[float, float] | None:
    """Location and scale of log1p(x - lo) for a wide non-negative range, else None."""
    if lo < 0 or hi - lo <= _WIDE:
        return None
    top = math.log1p(hi - lo)
    return 0.4 * top, 0.1 * top


def _null_rate(feature: FeatureContract) -> float:
    if not feature.nullable:
        return 0.0
    return DEFAULT_NULL_RATE if feature.null_rate is None else float(feature.null_rate)


def _category_probs(count: int, shift: float) -> np.ndarray:
    base = 1.0 / np.arange(1, count + 1) ** 0.8
    base /= base.sum()
    turn = min(max(shift, 0.0), 1.0)
    return (1 - turn) * base + turn * base[::-1]


def _feature_values(
    name: str, feature: FeatureContract, rows: int, seed: int, shift: float, unseen_rate: float
) -> np.ndarray:
    """One feature's column.

    float64 with NaN for missing, int64 for integers and booleans without nulls, object strings
    with None for missing categories.
    """
    rng = _rng(seed, "feature", name)
    missing = _rng(seed, "missing", name).random(rows) < _null_rate(feature)
    if feature.type == "categorical":
        values = np.asarray(feature.values, dtype=object)
        picked = values[rng.choice(len(values), size=rows, p=_category_probs(len(values), shift))]
        if feature.unseen == "other" and unseen_rate > 0:
            unseen = _rng(seed, "unseen", name).random(rows) < unseen_rate
            fresh = np.asarray([f"{name}-unseen-{i}" for i in range(3)], dtype=object)
            picked[unseen] = fresh[rng.integers(0, len(fresh), int(unseen.sum()))]
        picked[missing] = None
        return picked
    if feature.type == "boolean":
        rate = min(max(BOOLEAN_RATE * (1 + shift), 0.02), 0.98)
        flags = (rng.random(rows) < rate).astype(np.int64)
        return np.where(missing, np.nan, flags) if feature.nullable else flags
    lo, hi = _bounds(feature)
    wide = _lognormal_params(lo, hi)
    if wide is not None:
        mu, sigma = wide
        x = lo + np.expm1(
            np.minimum(rng.normal(mu + shift * sigma, sigma, rows), math.log1p(hi - lo))
        )
    else:
        x = lo + (hi - lo) * rng.beta(2.0 * (1 + max(shift, 0.0)), 2.0, rows)
    if feature.type == "integer":
        low, high = math.ceil(lo), math.floor(hi)
        if low > high:
            raise SyntheticError(f"feature {name!r}: no integer between min {lo} and max {hi}")
        x = np.clip(np.round(x), low, high)
        if not feature.nullable:
            return x.astype(np.int64)
    else:
        x = np.clip(np.round(x, 4), lo, hi)
    return np.where(missing, np.nan, x)


def _drivers(contract: Contract) -> tuple[list[str], str | None]:
    numeric = [n for n, f in contract.features.items() if f.type != "categorical"]
    categorical = [n for n, f in contract.features.items() if f.type == "categorical"]
    take = 3 if categorical else 4
    return numeric[:take], (categorical[0] if categorical else None)


def _category_effects(name: str, values: list[str]) -> dict[str, float]:
    """Fixed per-category effects: the same for every seed (one concept, many data sets)."""
    effects = _rng("rule", name).normal(0.0, 1.0, len(values))
    return dict(zip(values, effects.tolist(), strict=True))


def label_logit(contract: Contract, frame: pd.DataFrame) -> np.ndarray:
    """The label rule's log-odds (before the intercept) for each row of ``frame``.

    A fixed function of the raw feature values: a weighted sum of up to four numeric, integer or
    boolean features, each standardised as the unshifted generator draws it, plus a per-category
    effect of the first categorical. A missing or unseen value contributes 0.
    """
    numeric, categorical = _drivers(contract)
    logit = np.zeros(len(frame), dtype=np.float64)
    for weight, name in zip(_NUMERIC_WEIGHTS, numeric, strict=False):
        feature = contract.features[name]
        x = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        if feature.type == "boolean":
            z = (x - BOOLEAN_RATE) / math.sqrt(BOOLEAN_RATE * (1 - BOOLEAN_RATE))
        else:
            lo, hi = _bounds(feature)
            wide = _lognormal_params(lo, hi)
            if wide is not None:
                z = (np.log1p(np.maximum(x - lo, 0.0)) - wide[0]) / wide[1]
            else:
                z = ((x - lo) / (hi - lo) - 0.5) / math.sqrt(0.05) if hi > lo else x * 0.0
        logit += weight * np.nan_to_num(np.clip(z, -4.0, 4.0), nan=0.0)
    if categorical is not None:
        effects = _category_effects(categorical, list(contract.features[categorical].values or ()))
        column = frame[categorical].astype(object).to_numpy()
        logit += _CATEGORY_WEIGHT * np.fromiter(
            (effects.get(v, 0.0) if isinstance(v, str) else 0.0 for v in column),
            np.float64,
            len(column),
        )
    return logit


def _intercept(logit: np.ndarray, rate: float) -> float:
    """The intercept whose mean probability over ``logit`` is ``rate`` (bisection)."""
    low, high = -60.0, 60.0
    for _ in range(80):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) < rate:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _window(contract: Contract, start: date | None, days: int) -> date:
    if days < 1:
        raise SyntheticError(f"days must be at least 1, got {days}")
    if contract.time_range is None:
        return start or DEFAULT_START
    first = date.fromisoformat(contract.time_range.min)
    last = date.fromisoformat(contract.time_range.max)
    if start is None:
        start = DEFAULT_START
        if start < first or start + timedelta(days=days) > last:
            start = first
    if start < first or start + timedelta(days=days) > last:
        raise SyntheticError(
            f"the window {start} + {days} days is outside the contract's time_range "
            f"{first} .. {last}"
        )
    return start


def _features(
    contract: Contract, rows: int, seed: int, shift: float, unseen_rate: float
) -> dict[str, np.ndarray]:
    return {
        name: _feature_values(name, feature, rows, seed, shift, unseen_rate)
        for name, feature in contract.features.items()
    }


def synthesize(
    contract: Contract,
    rows: int = 10_000,
    *,
    seed: int = 0,
    start: date | None = None,
    days: int = 30,
    shift: float = 0.0,
    unseen_rate: float = 0.0,
) -> pd.DataFrame:
    """Generate ``rows`` rows of the contract's raw columns (``contract.raw_columns`` order).

    Args:
        contract: The data contract.
        rows: Rows to generate.
        seed: Random seed: the same arguments give the same frame.
        start: First day of the event-time window (UTC); default ``DEFAULT_START``, or the
            contract's ``time_range.min`` when that does not fit. Also part of every id.
        days: Length of the window.
        shift: Drift: 0 is the training distribution; 1 turns the categorical mixes around
            (the rarest value becomes the most frequent), moves numbers up their range and
            makes booleans true twice as often. The label rule does not change.
        unseen_rate: Share of values of each ``unseen: other`` categorical replaced by values
            outside its list (serving's ``other`` bucket).

    Raises:
        SyntheticError: ``rows`` or ``days`` below 1, a window outside ``time_range``, or an
            integer feature whose range holds no integer.
    """
    import pandas as pd

    if rows < 1:
        raise SyntheticError(f"rows must be at least 1, got {rows}")
    first_day = _window(contract, start, days)
    columns: dict[str, object] = {}
    if contract.id:
        columns[contract.id] = np.char.add(
            f"id-{seed}-{first_day:%Y%m%d}-", np.arange(rows).astype(str)
        ).astype(object)
    if contract.time:
        seconds = np.sort(_rng(seed, "time").integers(0, days * 86_400, rows))
        origin = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
        columns[contract.time] = (
            pd.Timestamp(origin) + pd.to_timedelta(seconds, unit="s")
        ).as_unit("us")
    for name in contract.other_columns:
        rng = _rng(seed, "other", name)
        if zlib.crc32(name.encode()) % 2:
            columns[name] = np.round(rng.lognormal(3.0, 1.0, rows), 2)
        else:
            columns[name] = np.char.add(f"{name}-", rng.integers(0, 500, rows).astype(str)).astype(
                object
            )
    features = _features(contract, rows, seed, shift, unseen_rate)
    columns.update(features)
    frame = pd.DataFrame(columns)
    logit = label_logit(contract, frame)
    if shift or unseen_rate:
        baseline = pd.DataFrame(_features(contract, rows, seed, 0.0, 0.0))
        intercept = _intercept(label_logit(contract, baseline), contract.label_rate_hint)
    else:
        intercept = _intercept(logit, contract.label_rate_hint)
    probability = 1 / (1 + np.exp(-(logit + intercept)))
    positive = _rng(seed, "label").random(rows) < probability
    label = contract.label
    if isinstance(label.positive, bool):
        values: np.ndarray = np.where(positive, label.positive, label.negative).astype(bool)
    elif isinstance(label.positive, int) and isinstance(label.negative, int):
        values = np.where(positive, label.positive, label.negative).astype(np.int64)
    else:
        values = np.where(positive, str(label.positive), str(label.negative)).astype(object)
    frame[label.column] = values
    return frame[list(contract.raw_columns)]


def write(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as Parquet so that the same frame always gives the same bytes.

    Zstandard compression and a fixed row-group size; written to a temporary file and renamed,
    so a reader never sees half a file. Returns ``path``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from argosy.files import staged

    table = pa.Table.from_pandas(frame, preserve_index=False)
    with staged(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_SIZE)
    return path
