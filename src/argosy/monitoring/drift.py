"""Per-column drift of a window of logged predictions against the reference sample.

Two implementations of the same tests: ``evidently_drift`` (the report people read, Evidently 0.7
``Report([DataDriftPreset()])``) and ``numpy_drift`` (plain numpy/scipy, the benchmark's floor and
the tests' cross-check). Only distance tests are offered (normed Wasserstein, Jensen-Shannon): a
distance does not shrink towards "drift" as the window grows, unlike a p-value, so the same
threshold means the same size of shift at 2,000 rows and at 2,000,000.

Which features are compared, and how, is given explicitly (``DriftSettings.features`` and
``frequency_compared``, built from the data contract by ``DriftSettings.for_features``): nothing
here knows a column name. A missing value (NaN, the encoder's one missing code) is left out of the
comparison in both implementations alike, so a nullable feature compares its observed values; a
column with no observed value on one side only is drift (distance 1), on both sides none.

A window larger than ``max_rows`` is sampled without replacement (seeded) before the tests; the
benchmark in ``bench/monitoring`` measures the sampling error this costs (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from argosy.data.encoding import FeatureSpec
from argosy.monitoring.columns import SCORE_COLUMN

Method = Literal["wasserstein", "jensenshannon"]


class DriftError(ValueError):
    """The reference or the window cannot be compared (missing columns, no rows)."""


@dataclass(frozen=True)
class DriftSettings:
    """Which columns are compared, and how.

    Attributes:
        features: The model features, in input order (the contract's ``features:``).
        frequency_compared: Those compared by value frequencies (categorical and boolean).
        num_method: Test for numerical features.
        cat_method: Test for frequency-compared features.
        per_column_method: Overrides by column name (a feature or ``score``).
        num_threshold: A numerical column drifts when its distance is at least this.
        cat_threshold: Same for frequency-compared columns.
        prediction_threshold: Same for the score (prediction drift).
        drift_share: The window drifts when at least this share of ``features`` drifted (the
            score is reported apart and not counted); the Evidently report's headline uses it.
        max_rows: Larger windows are sampled down to this many rows.
        seed: Seed of that sample.
    """

    features: tuple[str, ...]
    frequency_compared: frozenset[str] = frozenset()
    num_method: Method = "wasserstein"
    cat_method: Method = "jensenshannon"
    per_column_method: dict[str, Method] = field(default_factory=dict)
    num_threshold: float = 0.1
    cat_threshold: float = 0.1
    prediction_threshold: float = 0.1
    drift_share: float = 0.5
    max_rows: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "frequency_compared", frozenset(self.frequency_compared))
        if not self.features:
            raise DriftError("no features to compare")
        stray = sorted(self.frequency_compared - set(self.features))
        if stray:
            raise DriftError(f"frequency_compared names columns that are not features: {stray}")
        unknown = self.unknown_columns()
        if unknown:
            raise DriftError(
                f"per_column_method names columns that are neither features nor "
                f"{SCORE_COLUMN!r}: {unknown}"
            )

    @classmethod
    def for_features(cls, specs: Iterable[FeatureSpec], **options: Any) -> DriftSettings:
        """Settings for these feature specs (the contract's), kinds from ``frequency_compared``.

        Args:
            specs: The feature specs, in input order.
            **options: Any other field (methods, thresholds, sampling).
        """
        specs = tuple(specs)
        return cls(
            features=tuple(s.name for s in specs),
            frequency_compared=frozenset(s.name for s in specs if s.frequency_compared),
            **options,
        )

    def unknown_columns(self) -> list[str]:
        """Names in ``per_column_method`` that are neither a feature nor the score."""
        return sorted(set(self.per_column_method) - {*self.features, SCORE_COLUMN})

    def categorical(self, column: str) -> bool:
        """Whether ``column`` is compared by value frequencies."""
        return column in self.frequency_compared

    def method(self, column: str) -> Method:
        """The test for ``column``."""
        if column in self.per_column_method:
            return self.per_column_method[column]
        return self.cat_method if self.categorical(column) else self.num_method

    def threshold(self, column: str) -> float:
        """The distance at which ``column`` counts as drifted."""
        if column == SCORE_COLUMN:
            return self.prediction_threshold
        return self.cat_threshold if self.categorical(column) else self.num_threshold

    def kind(self, column: str) -> str:
        """``categorical`` (frequencies) or ``numerical``, as the tests treat the column."""
        return "categorical" if self.categorical(column) else "numerical"


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
        features: One result per model feature, in the contract's order.
        prediction: The score's drift, or None when the reference has no scores.
    """

    current_rows: int
    compared_rows: int
    reference_rows: int
    features: tuple[ColumnDrift, ...]
    prediction: ColumnDrift | None

    @property
    def drift_share(self) -> float:
        """Share of the model features (the contract's) that drifted."""
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


def _columns(reference: pd.DataFrame, settings: DriftSettings) -> list[str]:
    score = [SCORE_COLUMN] if SCORE_COLUMN in reference.columns else []
    return [*settings.features, *score]


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
    columns = _columns(reference, settings)
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
        features=tuple(one(c) for c in s.features),
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


def observed(values: np.ndarray) -> np.ndarray:
    """The values that are not missing (NaN, the encoder's missing code), as float64."""
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _empty_distance(ref: np.ndarray, cur: np.ndarray) -> float | None:
    """1 when only one side has no observed value, 0 when neither has any, else None."""
    if len(ref) and len(cur):
        return None
    return 0.0 if len(ref) == len(cur) else 1.0


def _numpy_distance(ref: np.ndarray, cur: np.ndarray, method: Method, categorical: bool) -> float:
    ref, cur = observed(ref), observed(cur)
    empty = _empty_distance(ref, cur)
    if empty is not None:
        return empty
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
            ref[c].to_numpy(), cur[c].to_numpy(), settings.method(c), settings.categorical(c)
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
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    ref, cur, all_columns = _prepare(reference, current, settings)
    # Evidently refuses a column without an observed value; those get the numpy rule's distance.
    distances: dict[str, float] = {}
    for c in all_columns:
        empty = _empty_distance(observed(ref[c].to_numpy()), observed(cur[c].to_numpy()))
        if empty is not None:
            distances[c] = empty
    columns = [c for c in all_columns if c not in distances]
    if not columns:
        raise DriftError("no column has an observed (non-missing) value in both frames")
    ref, cur = ref[columns], cur[columns]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if not settings.categorical(c)],
        categorical_columns=[c for c in columns if settings.categorical(c)],
    )
    overrides = {c: m for c, m in settings.per_column_method.items() if c in columns}
    features = [c for c in columns if c != SCORE_COLUMN]
    # The preset covers the features only, with Argosy's drift share: its "Dataset Drift is
    # detected" headline counts the same columns against the same threshold as the decision.
    # The score is a separate metric, as in the decision (prediction drift is reported apart).
    metrics: list[Any] = []
    if features:
        metrics.append(
            DataDriftPreset(
                columns=features,
                drift_share=settings.drift_share,
                num_method=settings.num_method,
                cat_method=settings.cat_method,
                per_column_method={c: m for c, m in overrides.items() if c in features} or None,
                num_threshold=settings.num_threshold,
                cat_threshold=settings.cat_threshold,
            )
        )
    if SCORE_COLUMN in columns:
        metrics.append(
            ValueDrift(
                column=SCORE_COLUMN,
                method=settings.method(SCORE_COLUMN),
                threshold=settings.prediction_threshold,
            )
        )
    snapshot = Report(metrics).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith(":ValueDrift"):
            distances[config["column"]] = float(metric["value"])
    missing = [c for c in all_columns if c not in distances]
    if missing:  # pragma: no cover - would mean Evidently changed its result format
        raise DriftError(f"Evidently returned no drift value for {missing}")
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html))
    if raw_json is not None:
        raw_json.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_json(str(raw_json))
    return _result(len(current), len(cur), len(ref), distances, settings)
