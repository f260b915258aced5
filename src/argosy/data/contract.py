"""The data contract: the one declarative file (``contract.yaml``) that describes a fork's data.

It names the model (the MLflow registered model, the InferenceService, the ONNX graph), the id,
event-time and label columns, every feature's type, nullability, range and categories, the slices
the gate checks, the primary metric and its floors, and the data-dependent bounds of validation and
monitoring. Every stage, the server (through ``metadata.json``) and the monitor read it; nothing
else in the package names a column. Loading validates it strictly: an unknown key or a wrong type
fails before any work and the message names the key (``contract.yaml: features.age.type: ...``).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from argosy.data.encoding import FeatureSpec
from argosy.yamlfile import describe, read_mapping

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_CONTRACT = Path("contract.yaml")
#: The metrics a contract may gate on (``metric.primary``, ``metric.floors``): each higher-better.
METRIC_NAMES = ("pr_auc", "roc_auc", "recall_at_fpr", "precision_at_k")
#: Column names the prediction log and the prepared files use for their own purposes.
RESERVED_COLUMNS = frozenset(
    {"request_id", "timestamp", "model_name", "model_version", "row_id", "score", "decision"}
)

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Positive = Annotated[int, Field(gt=0)]
K8sName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=53)]
LabelValue = bool | int | str


class ContractError(ValueError):
    """contract.yaml is missing, unreadable or invalid; the message names each bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FeatureContract(_Section):
    """One model feature as declared in ``features:``."""

    type: Literal["numeric", "integer", "boolean", "categorical"]
    nullable: bool = False
    min: float | int | None = None
    max: float | int | None = None
    values: list[str] | None = None
    unseen: Literal["reject", "other"] = "reject"
    null_rate: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FeatureContract:
        if self.type == "categorical":
            if not self.values:
                raise ValueError("a categorical feature needs its `values` list")
            if len(set(self.values)) != len(self.values):
                raise ValueError("`values` lists a category twice")
            if self.min is not None or self.max is not None:
                raise ValueError("min/max apply to numeric and integer features only")
        else:
            if self.values is not None:
                raise ValueError("`values` applies to categorical features only")
            if self.unseen != "reject":
                raise ValueError("`unseen` applies to categorical features only")
        if self.type == "boolean" and (self.min is not None or self.max is not None):
            raise ValueError("min/max do not apply to boolean features")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("min and max must be finite numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if self.null_rate and not self.nullable:
            raise ValueError("null_rate needs nullable: true")
        return self


class LabelContract(_Section):
    """The binary label: its column and which value is the positive class."""

    column: str
    positive: LabelValue
    negative: LabelValue

    @model_validator(mode="after")
    def _distinct(self) -> LabelContract:
        if self.positive == self.negative:
            raise ValueError("positive and negative must differ")
        return self


class RangeContract(_Section):
    """Inclusive bounds."""

    min: float | int
    max: float | int

    @model_validator(mode="after")
    def _ordered(self) -> RangeContract:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class TimeRangeContract(_Section):
    """Valid event times (ISO dates, UTC)."""

    min: str
    max: str

    @field_validator("min", "max")
    @classmethod
    def _iso(cls, value: str) -> str:
        date.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> TimeRangeContract:
        if self.min >= self.max:
            raise ValueError("min must be before max")
        return self


class MetricContract(_Section):
    """What the gate optimises and the floors a model must clear."""

    primary: Literal[METRIC_NAMES]  # type: ignore[valid-type]
    floors: dict[str, float]

    @field_validator("floors")
    @classmethod
    def _known(cls, floors: dict[str, float]) -> dict[str, float]:
        for name, value in floors.items():
            if name not in METRIC_NAMES:
                raise ValueError(f"unknown metric {name!r}; known: {list(METRIC_NAMES)}")
            if not math.isfinite(value):
                raise ValueError(f"floor for {name!r} must be a finite number")
        return floors


class MonitoringContract(_Section):
    """Data-dependent sizes and floors of the drift monitor and the label feedback."""

    min_rows: Positive
    min_labelled_rows: Positive
    min_positives: Positive
    pr_auc_min: Fraction
    recall_min: Fraction


class Contract(_Section):
    """The whole of contract.yaml."""

    # Keys that DVC's params dependencies name must be present even when empty (null / []).
    name: K8sName
    description: str = ""
    source: Literal["simulate", "files"]
    id: str | None
    time: str | None
    time_range: TimeRangeContract | None
    label: LabelContract
    features: dict[str, FeatureContract]
    other_columns: list[str]
    rows: RangeContract
    label_rate: RangeContract
    slices: list[str]
    metric: MetricContract
    monitoring: MonitoringContract

    @model_validator(mode="after")
    def _columns_fit(self) -> Contract:
        if not self.features:
            raise ValueError("features: declare at least one feature")
        roles = [("label.column", self.label.column)]
        roles += [("id", self.id)] if self.id else []
        roles += [("time", self.time)] if self.time else []
        names = [name for _, name in roles] + list(self.features) + list(self.other_columns)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"columns named in more than one role: {twice}")
        clash = sorted(RESERVED_COLUMNS & set(self.features))
        if clash:
            raise ValueError(f"feature names {clash} are reserved for the prediction log")
        if (self.time is None) != (self.time_range is None):
            raise ValueError("time and time_range go together: give both or neither")
        for name in self.slices:
            feature = self.features.get(name)
            if feature is None:
                raise ValueError(f"slices: {name!r} is not a declared feature")
            if feature.type not in ("categorical", "boolean"):
                raise ValueError(f"slices: {name!r} must be categorical or boolean")
        if not 0 < self.label_rate.min < self.label_rate.max < 1:
            raise ValueError("label_rate: need 0 < min < max < 1")
        if self.rows.min < 1:
            raise ValueError("rows.min must be at least 1")
        return self

    # ------------------------------------------------------------------ derived views

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Model features in input order (the columns of the ONNX input)."""
        return tuple(self.features)

    @property
    def specs(self) -> tuple[FeatureSpec, ...]:
        """The encoder's view of every feature, in input order."""
        return tuple(
            FeatureSpec(
                name=name,
                type=f.type,
                nullable=f.nullable,
                minimum=None if f.min is None else float(f.min),
                maximum=None if f.max is None else float(f.max),
                categories=None if f.values is None else tuple(f.values),
                unseen=f.unseen,
            )
            for name, f in self.features.items()
        )

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """Every column the raw data must have, in a stable order."""
        head = [c for c in (self.id, self.time) if c]
        return (*head, *self.other_columns, *self.features, self.label.column)

    @property
    def label_rate_hint(self) -> float:
        """The midpoint of the label-rate bounds (synthetic data aims at it)."""
        return (float(self.label_rate.min) + float(self.label_rate.max)) / 2

    # ------------------------------------------------------------------ encoding (pandas)

    def to_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a frame's features as the ``[N, F]`` FP32 matrix the model reads.

        Raises:
            EncodingError: An unseen category under ``unseen: reject``.
        """
        return encode_frame(frame, self.specs)

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        """The label as 0/1 (int8): 1 where the label column holds ``label.positive``."""
        return (frame[self.label.column] == self.label.positive).to_numpy(dtype=np.int8)


def encode_frame(frame: pd.DataFrame, specs: tuple[FeatureSpec, ...] | list) -> np.ndarray:
    """Encode a frame's columns as the ``[N, F]`` FP32 matrix, one column per spec, in order.

    The vectorised twin of :meth:`FeatureSpec.encode_values` (the server's path): both end in
    :meth:`FeatureSpec.finish_codes`, and the tests hold them equal.

    Raises:
        EncodingError: An unseen category under ``unseen: reject``.
    """
    import pandas as pd

    out = np.empty((len(frame), len(specs)), dtype=np.float32)
    for i, spec in enumerate(specs):
        column = frame[spec.name]
        missing = column.isna().to_numpy()
        if spec.categorical:
            categories = list(spec.categories or ())
            if isinstance(column.dtype, pd.CategoricalDtype):
                # Dictionary-encoded (as training reads Parquet): match its few distinct
                # values as strings, then look every row's code up.
                distinct = column.cat.categories.astype("string")
                lookup = np.append(pd.Categorical(distinct, categories=categories).codes, -1)
                codes = lookup[column.cat.codes.to_numpy()].astype(np.int64)
                raw = column.array  # read only to name an unseen value
            else:
                text = column.astype("string")
                codes = np.asarray(pd.Categorical(text, categories=categories).codes, np.int64)
                raw = text.array
            out[:, i] = spec.finish_codes(codes, missing, raw)
        elif spec.type == "boolean" and not pd.api.types.is_numeric_dtype(column):
            out[:, i] = spec.encode_values(column.to_numpy(object))
        else:
            out[:, i] = column.to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float32)
    return out


_LISTS = ("other_columns", "slices")
_NULLABLE_KEYS = ("id", "time", "time_range", *_LISTS)


def _missing(key: str) -> str:
    if key in _NULLABLE_KEYS:
        return (
            f"required; write `{key}: {'[]' if key in _LISTS else 'null'}` when it does not apply"
        )
    return "required (see the comments in contract.yaml)"


def parse_contract(raw: object, source: Path = DEFAULT_CONTRACT) -> Contract:
    """Validate an already-loaded contract mapping.

    Raises:
        ContractError: Naming each unknown, missing or mistyped key.
    """
    if not isinstance(raw, dict):
        raise ContractError(f"{source}: expected a mapping (see the comments in contract.yaml)")
    try:
        return Contract.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise ContractError(
            describe(exc, f"{source}: invalid data contract", Contract, _missing)
        ) from None


def load_contract(path: Path = DEFAULT_CONTRACT) -> Contract:
    """Read and validate the data contract.

    Raises:
        ContractError: The file is missing, not YAML, or invalid.
    """
    hint = (
        "run from the repository root, or draft one with `argosy init --data FILE --label COLUMN`"
    )
    return parse_contract(read_mapping(path, ContractError, hint), path)
