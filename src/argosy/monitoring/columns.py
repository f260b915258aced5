"""Which logged columns the drift tests treat as numerical and which as categorical.

The server logs every feature as float32 (categories as their code, see ``schema.to_matrix``), so
the kind comes from the feature contract, not from the dtype: schema categoricals and 0/1 flags are
compared as category frequencies, everything else as a distribution on a line.
"""

from __future__ import annotations

from argosy.data import schema

SCORE_COLUMN = "score"


def is_categorical(feature: schema.Feature) -> bool:
    """Categorical features and 0/1 flags are compared by their value frequencies."""
    return feature.categorical or (feature.integer and feature.maximum == 1.0)


CATEGORICAL_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in schema.MODEL_FEATURES if is_categorical(f)
)
NUMERICAL_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in schema.MODEL_FEATURES if not is_categorical(f)
)
FEATURE_COLUMNS: tuple[str, ...] = schema.FEATURES
