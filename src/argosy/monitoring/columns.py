"""Which logged columns the drift tests compare by distribution and which by value frequencies.

The server logs every feature as float32 (a category as its code, a boolean as 0/1, a missing value
as NaN: see ``argosy.data.encoding``), so a column's kind comes from the data contract, not from its
dtype: categorical and boolean features (``FeatureSpec.frequency_compared``) are compared as value
frequencies, numeric and integer ones as distributions on a line. The score is numerical.
"""

from __future__ import annotations

from collections.abc import Iterable

from argosy.data.contract import Contract
from argosy.data.encoding import FeatureSpec

SCORE_COLUMN = "score"
#: The prediction log's per-row id column (``argosy.predlog``); late labels join on it.
ROW_ID_COLUMN = "row_id"


def feature_specs(source: Contract | Iterable[FeatureSpec]) -> tuple[FeatureSpec, ...]:
    """The feature specs of a contract, or the specs given, in input order."""
    return source.specs if isinstance(source, Contract) else tuple(source)


def feature_columns(source: Contract | Iterable[FeatureSpec]) -> tuple[str, ...]:
    """Every model feature, in input order."""
    return tuple(spec.name for spec in feature_specs(source))


def frequency_columns(source: Contract | Iterable[FeatureSpec]) -> tuple[str, ...]:
    """Features compared by their value frequencies (categorical and boolean), in input order."""
    return tuple(spec.name for spec in feature_specs(source) if spec.frequency_compared)


def numerical_columns(source: Contract | Iterable[FeatureSpec]) -> tuple[str, ...]:
    """Features compared as distributions on a line (numeric and integer), in input order."""
    return tuple(spec.name for spec in feature_specs(source) if not spec.frequency_compared)
