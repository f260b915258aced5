"""The one encoder from raw feature values to the model's FP32 matrix, numpy only.

Training, evaluation, the drift reference sample, the model server, the monitor and the label join
all turn raw values into model inputs through :class:`FeatureSpec`: a missing value is NaN for every
feature type; a category becomes its index in the declared value list; an unseen category is
refused (``unseen: reject``) or becomes the reserved ``other`` code, one past the last value
(``unseen: other``); booleans become 0/1. The specs travel inside ``metadata.json``, so the server
encodes exactly as training did without reading the data contract or importing pandas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

FeatureType = Literal["numeric", "integer", "boolean", "categorical"]
UnseenPolicy = Literal["reject", "other"]
FEATURE_TYPES: tuple[str, ...] = ("numeric", "integer", "boolean", "categorical")

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class EncodingError(ValueError):
    """A raw value the feature's declaration does not admit (an unseen category, a bad boolean).

    Attributes:
        feature: The feature's name.
        value: The offending value (as given).
    """

    def __init__(self, feature: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.feature = feature
        self.value = value


def is_missing(value: Any) -> bool:
    """Whether a raw value stands for "missing" (None, NaN, pandas' NA/NaT)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(value != value)  # NaN-like scalars (numpy, pandas NA raises TypeError)
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: how its raw values are checked and encoded.

    Attributes:
        name: Column name in the data; tensor name in V2 requests.
        type: ``numeric``, ``integer``, ``boolean`` or ``categorical``.
        nullable: Whether a missing value is legitimate (encoded NaN; the model handles it).
        minimum: Smallest valid value (numeric and integer features), or None.
        maximum: Largest valid value (numeric and integer features), or None.
        categories: The declared values of a categorical feature, in code order.
        unseen: What a categorical value outside ``categories`` does: ``reject`` or ``other``.
    """

    name: str
    type: FeatureType = "numeric"
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = None
    unseen: UnseenPolicy = "reject"

    def __post_init__(self) -> None:
        if self.type not in FEATURE_TYPES:
            raise ValueError(f"feature {self.name!r}: unknown type {self.type!r}")
        if (self.type == "categorical") != (self.categories is not None):
            raise ValueError(f"feature {self.name!r}: categories go with type categorical only")

    @property
    def categorical(self) -> bool:
        """Whether values are category codes."""
        return self.type == "categorical"

    @property
    def other_code(self) -> int | None:
        """The reserved code of unseen categories (``unseen: other``), else None."""
        if self.categories is None or self.unseen != "other":
            return None
        return len(self.categories)

    @property
    def code_count(self) -> int:
        """How many codes a categorical feature may take (its values, plus ``other``)."""
        return len(self.categories or ()) + (self.other_code is not None)

    @property
    def frequency_compared(self) -> bool:
        """Whether drift tests compare value frequencies (categories, booleans) or distributions."""
        return self.type in ("categorical", "boolean")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written into ``metadata.json``."""
        return {
            "name": self.name,
            "type": self.type,
            "nullable": self.nullable,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "categories": None if self.categories is None else list(self.categories),
            "unseen": self.unseen,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FeatureSpec:
        """Read the JSON form back.

        Raises:
            ValueError: An unknown type, or fields that do not fit together.
        """
        categories = doc.get("categories")
        kind = doc.get("type") or ("categorical" if categories is not None else "numeric")
        return cls(
            name=str(doc["name"]),
            type=kind,
            nullable=bool(doc.get("nullable", doc.get("allow_nan", False))),
            minimum=None if doc.get("minimum") is None else float(doc["minimum"]),
            maximum=None if doc.get("maximum") is None else float(doc["maximum"]),
            categories=None if categories is None else tuple(str(c) for c in categories),
            unseen=doc.get("unseen") or "reject",
        )

    def code_map(self) -> dict[str, int]:
        """Category value -> code."""
        return {value: code for code, value in enumerate(self.categories or ())}

    def finish_codes(self, codes: np.ndarray, missing: np.ndarray, raw: Any = None) -> np.ndarray:
        """Apply the missing and unseen rules to integer codes (-1 where the value was unseen).

        Both encoders below end here, so the rules live in one place.

        Args:
            codes: One code per row, -1 for a value outside ``categories``.
            missing: True where the raw value was missing.
            raw: The raw values, to name an unseen one in the error.

        Raises:
            EncodingError: An unseen value under ``unseen: reject``.
        """
        out = codes.astype(np.float32)
        unseen = (codes < 0) & ~missing
        if unseen.any():
            if self.other_code is None:
                index = int(np.argmax(unseen))
                value = raw[index] if raw is not None else "?"
                raise EncodingError(
                    self.name,
                    value,
                    f"feature '{self.name}': {_short(value)} is not one of its "
                    f"{len(self.categories or ())} declared categories",
                )
            out[unseen] = self.other_code
        out[missing] = np.nan
        return out

    def encode_values(self, values: Sequence[Any]) -> np.ndarray:
        """Encode a short sequence of raw Python values (one request's column).

        Categories are matched as strings; booleans accept ``true``/``false`` and 0/1; numbers
        pass through. Missing values become NaN whatever the type.

        Raises:
            EncodingError: An unseen category (``unseen: reject``) or a value of the wrong kind.
        """
        n = len(values)
        missing = np.fromiter((is_missing(v) for v in values), bool, n)
        if self.categorical:
            lookup = self.code_map()
            codes = np.fromiter(
                (
                    -1 if m else lookup.get(_as_text(v), -1)
                    for v, m in zip(values, missing, strict=True)
                ),
                np.int64,
                n,
            )
            return self.finish_codes(codes, missing, values)
        out = np.empty(n, dtype=np.float32)
        for i, (value, miss) in enumerate(zip(values, missing, strict=True)):
            out[i] = np.nan if miss else self._number(value)
        return out

    def _number(self, value: Any) -> float:
        if self.type == "boolean":
            if isinstance(value, bool | np.bool_):
                return float(value)
            if isinstance(value, bytes | str):
                text = _as_text(value).strip().lower()
                if text in _TRUE:
                    return 1.0
                if text in _FALSE:
                    return 0.0
            elif isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
                return float(value)
            raise EncodingError(
                self.name, value, f"feature '{self.name}' is boolean: {_short(value)} is not 0/1"
            )
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            raise EncodingError(
                self.name,
                value,
                f"feature '{self.name}' is {self.type}: {_short(value)} is not a number",
            )
        return float(value)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="strict")
    return value if isinstance(value, str) else str(value)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def encode_rows(specs: Sequence[FeatureSpec], columns: Iterable[Sequence[Any]]) -> np.ndarray:
    """Encode one raw column per spec into the ``[N, F]`` FP32 matrix, in spec order."""
    encoded = [spec.encode_values(column) for spec, column in zip(specs, columns, strict=True)]
    if not encoded:
        return np.empty((0, 0), dtype=np.float32)
    return np.ascontiguousarray(np.stack(encoded, axis=1), dtype=np.float32)
