"""Per-column drift of a window of logged predictions against the reference sample.

Two implementations of the same tests: ``evidently_drift`` (the report people read, Evidently 0.7
``Report([DataDriftPreset()])``) and ``numpy_drift`` (plain numpy/scipy, the benchmark's floor and
the tests' cross-check). Only distance tests are offered (normed Wasserstein, Jensen-Shannon): a
distance does not shrink towards "drift" as the window grows, unlike a p-value, so the same
threshold means the same size of shift at 2,000 rows and at 2,000,000.

A window larger than ``max_rows`` is sampled without replacement (seeded) before the tests; the
benchmark in ``bench/monitoring`` measures the sampling error this costs (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from argosy.monitoring.columns import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, SCORE_COLUMN

Method = Literal["wasserstein", "jensenshannon"]


class DriftError(ValueError):
    """The reference or the window cannot be compared (missing columns, no rows)."""


@dataclass(frozen=True)
class DriftSettings:
    """How columns are compared.

    Attributes:
        num_method: Test for numerical features.
        cat_method: Test for categorical features and 0/1 flags.
        per_column_method: Overrides by column name.
        num_threshold: A numerical column drifts when its distance is at least this.
        cat_threshold: Same for categorical columns.
        prediction_threshold: Same for the score (prediction drift).
        max_rows: Larger windows are sampled down to this many rows.
        seed: Seed of that sample.
    """

    num_method: Method = "wasserstein"
    cat_method: Method = "jensenshannon"
    per_column_method: dict[str, Method] = field(default_factory=dict)
    num_threshold: float = 0.1
    cat_threshold: float = 0.1
    prediction_threshold: float = 0.1
    max_rows: int = 200_000
    seed: int = 0

    def method(self, column: str) -> Method:
        """The test for ``column``."""
        if column in self.per_column_method:
            return self.per_column_method[column]
        if column == SCORE_COLUMN:
            return self.num_method
        return self.cat_method if column in CATEGORICAL_COLUMNS else self.num_method

    def threshold(self, column: str) -> float:
        """The distance at which ``column`` counts as drifted."""
        if column == SCORE_COLUMN:
            return self.prediction_threshold
        return self.cat_threshold if column in CATEGORICAL_COLUMNS else self.num_threshold

    def kind(self, column: str) -> str:
        """``categorical`` or ``numerical``, as the tests treat the column."""
        return "categorical" if column in CATEGORICAL_COLUMNS else "numerical"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's test result."""

    column: str
    kind: str
    method: str
    distance: float
    threshold: float

    @property
    def drifted(self) -> bool:
        """A distance at or above the threshold is drift (Evidently's rule)."""
        return self.distance >= self.threshold


@dataclass(frozen=True)
class DriftResult:
    """The drift of one window.

    Attributes:
        current_rows: Rows in the window before sampling.
        compared_rows: Rows actually compared (after sampling).
        reference_rows: Rows in the reference sample.
        features: One result per model feature, in schema order.
        prediction: The score's drift, or None when the reference has no scores.
    """

    current_rows: int
    compared_rows: int
    reference_rows: int
    features: tuple[ColumnDrift, ...]
    prediction: ColumnDrift | None

    @property
    def drift_share(self) -> float:
        """Share of model features that drifted."""
        return sum(c.drifted for c in self.features) / len(self.features)

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted features, largest distance relative to threshold first."""
        drifted = [c for c in self.features if c.drifted]
        drifted.sort(key=lambda c: c.distance / c.threshold, reverse=True)
        return [c.column for c in drifted]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, with the derived share and drifted list."""
        return {
            "current_rows": self.current_rows,
            "compared_rows": self.compared_rows,
            "reference_rows": self.reference_rows,
            "drift_share": self.drift_share,
            "drifted_columns": self.drifted_columns,
            "prediction": None
            if self.prediction is None
            else {**asdict(self.prediction), "drifted": self.prediction.drifted},
            "features": [{**asdict(c), "drifted": c.drifted} for c in self.features],
        }


def _columns(reference: pd.DataFrame) -> list[str]:
    return [*FEATURE_COLUMNS, *([SCORE_COLUMN] if SCORE_COLUMN in reference.columns else [])]


def _check(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DriftError(f"{what} lacks columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    if frame.empty:
        raise DriftError(f"{what} has no rows")


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows drawn without replacement, in their original order."""
    if len(frame) <= max_rows:
        return frame
    index = np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False))
    return frame.iloc[index]


def _prepare(
    reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    columns = _columns(reference)
    _check(reference, columns, "the reference sample")
    _check(current, columns, "the prediction-log window")
    ref = sample_rows(reference[columns], settings.max_rows, settings.seed)
    cur = sample_rows(current[columns], settings.max_rows, settings.seed + 1)
    return ref, cur, columns


def _result(
    current_rows: int, compared: int, ref_rows: int, distances: dict[str, float], s: DriftSettings
) -> DriftResult:
    def one(column: str) -> ColumnDrift:
        return ColumnDrift(
            column, s.kind(column), s.method(column), float(distances[column]), s.threshold(column)
        )

    return DriftResult(
        current_rows=current_rows,
        compared_rows=compared,
        reference_rows=ref_rows,
        features=tuple(one(c) for c in FEATURE_COLUMNS),
        prediction=one(SCORE_COLUMN) if SCORE_COLUMN in distances else None,
    )


# ---------------------------------------------------------------- plain numpy/scipy (the floor)


def wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    """First Wasserstein distance divided by the reference's standard deviation (at least 0.001)."""
    norm = max(float(np.std(reference)), 1e-3)
    return float(stats.wasserstein_distance(reference, current) / norm)


def jensenshannon_binned(reference: np.ndarray, current: np.ndarray, categorical: bool) -> float:
    """Jensen-Shannon distance of value frequencies (categories, few values) or of Sturges bins."""
    if not categorical and len(np.unique(reference)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        p = np.histogram(reference, edges)[0] / len(reference)
        q = np.histogram(current, edges)[0] / len(current)
    else:
        keys = np.union1d(reference, current)
        p = np.bincount(np.searchsorted(keys, reference), minlength=len(keys)) / len(reference)
        q = np.bincount(np.searchsorted(keys, current), minlength=len(keys)) / len(current)
    return float(distance.jensenshannon(p, q))


def _numpy_distance(ref: np.ndarray, cur: np.ndarray, method: Method, categorical: bool) -> float:
    ref = ref[~np.isnan(ref)].astype(np.float64)
    cur = cur[~np.isnan(cur)].astype(np.float64)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0 if len(ref) == len(cur) else 1.0
    if method == "wasserstein":
        return wasserstein_norm(ref, cur)
    return jensenshannon_binned(ref, cur, categorical)


def numpy_drift(
    reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings
) -> DriftResult:
    """The same per-column tests as ``evidently_drift`` in plain numpy/scipy, without a report.

    Raises:
        DriftError: A frame lacks a column or has no rows.
    """
    ref, cur, columns = _prepare(reference, current, settings)
    distances = {
        c: _numpy_distance(
            ref[c].to_numpy(), cur[c].to_numpy(), settings.method(c), c in CATEGORICAL_COLUMNS
        )
        for c in columns
    }
    return _result(len(current), len(cur), len(ref), distances, settings)


# ---------------------------------------------------------------- Evidently (the report)


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: DriftSettings,
    html: Path | None = None,
    raw_json: Path | None = None,
) -> DriftResult:
    """Run Evidently's data drift preset on the window and optionally save its HTML and JSON.

    Args:
        reference: The reference sample (features, optionally ``score``).
        current: The window of logged predictions.
        settings: Tests, thresholds and sampling.
        html: Where to write Evidently's HTML report.
        raw_json: Where to write Evidently's own JSON snapshot.

    Raises:
        DriftError: A frame lacks a column or has no rows.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur, columns = _prepare(reference, current, settings)
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in CATEGORICAL_COLUMNS],
        categorical_columns=[c for c in columns if c in CATEGORICAL_COLUMNS],
    )
    preset = DataDriftPreset(
        columns=columns,
        num_method=settings.num_method,
        cat_method=settings.cat_method,
        per_column_method=dict(settings.per_column_method) or None,
        num_threshold=settings.num_threshold,
        cat_threshold=settings.cat_threshold,
        per_column_threshold={SCORE_COLUMN: settings.prediction_threshold}
        if SCORE_COLUMN in columns
        else None,
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    distances: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith(":ValueDrift"):
            distances[config["column"]] = float(metric["value"])
    missing = [c for c in columns if c not in distances]
    if missing:  # pragma: no cover - would mean Evidently changed its result format
        raise DriftError(f"Evidently returned no drift value for {missing}")
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html))
    if raw_json is not None:
        raw_json.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_json(str(raw_json))
    return _result(len(current), len(cur), len(ref), distances, settings)
