"""``argosy init``: profile a Parquet or CSV file and draft the data contract from it.

The profile records, per column, the inferred type, the range, the null rate and the distinct
values; the draft turns it into a ``contract.yaml`` that :func:`argosy.data.contract.parse_contract`
accepts, commented for review like the repository's own (``FORK:`` lines, the profile above each
feature, a note on every drafted bound). Large Parquet files are not read whole: the row count,
ranges and null counts come from the footer's statistics, the categories from a seeded sample of
row groups, and only the label, id and time columns are read in full.

Type rules: booleans, and numbers that only take 0 and 1, are ``boolean``; other integers (and
whole-valued floats that hold nulls, which is how pandas stores a nullable integer) are
``integer``; other numbers are ``numeric``; strings are ``categorical`` unless they have too many
distinct values to be categories (then an ``other_columns`` entry: likely an identifier or free
text); date-times are only ever the event time (``--time``), elsewhere they are other columns.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from argosy.data.contract import DEFAULT_CONTRACT, RESERVED_COLUMNS, Contract

if TYPE_CHECKING:
    import pandas as pd

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz")
#: Rows profiled for categories when a Parquet file is larger (whole row groups, seeded).
SAMPLE_ROWS = 200_000
#: A string column with more distinct values than this is not a categorical feature.
MAX_CATEGORIES = 1000
#: ... nor one whose distinct values exceed this share of its non-null values (beyond a few).
MAX_DISTINCT_SHARE = 0.5
#: Slices are drafted from features with at most this many values.
MAX_SLICE_VALUES = 20
#: Observed ranges are widened by this share of their span on each side.
RANGE_PAD = 0.1
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
#: Words YAML 1.1 reads as booleans or null: never written unquoted.
_YAML_WORDS = frozenset(
    "y n yes no on off true false null ~".split()  # noqa: SIM905 (a word list reads better)
)


class InitError(ValueError):
    """The file or the arguments do not allow a draft; the message says which and why."""


@dataclass(frozen=True)
class ColumnProfile:
    """What the profile saw in one column.

    Attributes:
        name: The column's name.
        kind: ``numeric``, ``integer``, ``boolean``, ``categorical``, ``text`` (strings with too
            many distinct values), ``datetime``, ``empty`` (all missing) or ``unsupported``.
        dtype: The column's pandas dtype, as text.
        rows: Rows counted (the sample's, or the file's when the footer or a full read gave them).
        nulls: Missing values among ``rows``.
        distinct: Distinct non-null values in the sample.
        minimum: Smallest value (numbers, booleans as 0/1), or None.
        maximum: Largest value, or None.
        counts: Non-null values and their counts in the sample, most frequent first (strings and
            booleans only; at most ``MAX_CATEGORIES + 1`` entries).
    """

    name: str
    kind: str
    dtype: str
    rows: int
    nulls: int
    distinct: int
    minimum: float | None = None
    maximum: float | None = None
    counts: tuple[tuple[Any, int], ...] = ()

    @property
    def null_rate(self) -> float:
        """The share of missing values."""
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def long_tail(self) -> bool:
        """Whether some categories are rare enough that unseen ones are likely to follow."""
        non_null = self.rows - self.nulls
        rare = max(2, non_null // 1000)
        return any(count <= rare for _, count in self.counts)


@dataclass(frozen=True)
class DataProfile:
    """The profile of one file.

    Attributes:
        path: The file profiled.
        rows: Its row count.
        sampled_rows: Rows read for the categories (``rows`` when the file was read whole).
        columns: One profile per column, in file order.
        full: The columns read in full (label, id, time), as pandas Series.
    """

    path: Path
    rows: int
    sampled_rows: int
    columns: dict[str, ColumnProfile]
    full: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Draft:
    """A drafted contract.

    Attributes:
        text: The YAML text, comments included.
        contract: The same text, parsed (so a draft is never written unless it loads).
        profile: The profile it was drafted from.
    """

    text: str
    contract: Contract
    profile: DataProfile


# ---------------------------------------------------------------------------------- profiling


def profile_data(
    path: Path,
    *,
    full_columns: Sequence[str] = (),
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> DataProfile:
    """Profile a Parquet or CSV file.

    Args:
        path: The file.
        full_columns: Columns to read in full (the label, id and time columns), kept in
            :attr:`DataProfile.full`; each must exist.
        sample_rows: Rows to sample (whole row groups, seeded) from a larger Parquet file.
        seed: Seed of that sample.

    Raises:
        InitError: A missing or unreadable file, another format, or a missing column.
    """
    if not path.exists():
        raise InitError(f"{path}: no such file")
    if path.is_dir():
        raise InitError(f"{path}: is a directory; give one Parquet or CSV file")
    lower = path.name.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return _profile_parquet(path, full_columns, sample_rows, seed)
    if lower.endswith(CSV_SUFFIXES):
        return _profile_csv(path, full_columns)
    raise InitError(
        f"{path}: not a Parquet or CSV file (expected a name ending in "
        f"{', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)})"
    )


def _profile_csv(path: Path, full_columns: Sequence[str]) -> DataProfile:
    import pandas as pd

    try:
        frame = pd.read_csv(path, low_memory=False)
    except (ValueError, UnicodeDecodeError, OSError) as exc:  # ParserError is a ValueError
        raise InitError(f"{path}: not a readable CSV file ({_first_line(exc)})") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    _require(path, columns, full_columns)
    profiles = {name: _profile_series(name, frame[name]) for name in columns}
    full = {name: frame[name] for name in full_columns}
    return DataProfile(path, len(frame), len(frame), profiles, full)


def _profile_parquet(
    path: Path, full_columns: Sequence[str], sample_rows: int, seed: int
) -> DataProfile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InitError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    meta = parquet.metadata
    columns = [n for n in parquet.schema_arrow.names if not n.startswith("__index_level_")]
    _require(path, columns, full_columns)
    rows = meta.num_rows
    groups = list(range(meta.num_row_groups))
    if rows > sample_rows and len(groups) > 1:
        order = np.random.default_rng(seed).permutation(len(groups))
        chosen, taken = [], 0
        for g in order:
            chosen.append(int(g))
            taken += meta.row_group(int(g)).num_rows
            if taken >= sample_rows:
                break
        groups = sorted(chosen)
    try:
        sample = parquet.read_row_groups(groups, columns=columns, use_pandas_metadata=False)
        full = parquet.read(columns=list(full_columns), use_pandas_metadata=False)
    except (pa.ArrowException, OSError) as exc:
        raise InitError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    frame = sample.to_pandas()
    leaf = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    profiles = {}
    for name in columns:
        profile = _profile_series(name, frame[name])
        footer = _footer_stats(meta, leaf.get(name)) if name in leaf else None
        if footer is not None and profile.kind in ("numeric", "integer", "boolean"):
            lo, hi, nulls = footer
            kind = profile.kind
            if kind == "boolean" and (lo < 0 or hi > 1):  # only the sample held just 0 and 1
                kind = "integer" if profile.dtype.lower().startswith(("int", "uint")) else "numeric"
            profile = ColumnProfile(
                name, kind, profile.dtype, rows, nulls, profile.distinct,
                lo, hi, profile.counts,
            )  # fmt: skip
        profiles[name] = profile
    full_frame = full.to_pandas()
    return DataProfile(path, rows, len(frame), profiles, {n: full_frame[n] for n in full_columns})


def _footer_stats(meta: Any, index: int | None) -> tuple[float, float, int] | None:
    """Exact min, max and null count over every row group, when the footer has them all."""
    if index is None or meta.num_row_groups == 0:
        return None
    lo, hi, nulls = math.inf, -math.inf, 0
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(index).statistics
        if stats is None or not stats.has_min_max or not stats.has_null_count:
            return None
        try:
            low, high = float(stats.min), float(stats.max)
        except (TypeError, ValueError):
            return None
        if not (math.isfinite(low) and math.isfinite(high)):
            return None
        lo, hi, nulls = min(lo, low), max(hi, high), nulls + int(stats.null_count)
    return lo, hi, nulls


def _profile_series(name: str, series: pd.Series) -> ColumnProfile:
    import pandas as pd
    from pandas.api import types

    rows, nulls = len(series), int(series.isna().sum())
    values = series.dropna()
    dtype = str(series.dtype)

    def make(kind: str, lo: Any = None, hi: Any = None, counts: Any = ()) -> ColumnProfile:
        distinct = int(values.astype(str).nunique()) if len(values) else 0
        return ColumnProfile(
            name, kind, dtype, rows, nulls, distinct,
            None if lo is None else float(lo), None if hi is None else float(hi), tuple(counts),
        )  # fmt: skip

    if not len(values):
        return make("empty")
    if isinstance(series.dtype, pd.CategoricalDtype):
        values = values.astype(object)
        series = series.astype(object)
    if types.is_bool_dtype(series.dtype):
        flags = values.astype(bool)
        return make("boolean", flags.min(), flags.max(), _counts(flags))
    if types.is_datetime64_any_dtype(series.dtype):
        return make("datetime")
    if types.is_numeric_dtype(series.dtype):
        return _profile_numbers(values.to_numpy(dtype=np.float64), make, integer_dtype=(
            types.is_integer_dtype(series.dtype)
        ), has_nulls=nulls > 0)  # fmt: skip
    kinds = {type(v) for v in values}
    if kinds <= {bool, np.bool_}:
        flags = values.astype(bool)
        return make("boolean", flags.min(), flags.max(), _counts(flags))
    if kinds <= {str}:
        counts = _counts(values)
        distinct = int(values.nunique())
        many = distinct > MAX_CATEGORIES or (
            distinct > MAX_SLICE_VALUES and distinct > MAX_DISTINCT_SHARE * len(values)
        )
        return make("text" if many else "categorical", counts=counts)
    if all(isinstance(v, int | float | np.integer | np.floating) for v in values):
        return _profile_numbers(
            values.to_numpy(dtype=np.float64), make, integer_dtype=False, has_nulls=nulls > 0
        )
    return make("unsupported")


def _profile_numbers(
    numbers: np.ndarray, make: Any, *, integer_dtype: bool, has_nulls: bool
) -> ColumnProfile:
    finite = numbers[np.isfinite(numbers)]
    if not len(finite):
        return make("unsupported")
    lo, hi = float(finite.min()), float(finite.max())
    whole = bool(np.all(finite == np.round(finite)))
    if whole and set(np.unique(finite)) <= {0.0, 1.0}:
        return make("boolean", lo, hi, _counts(finite.astype(bool)))
    if integer_dtype or (whole and has_nulls):
        return make("integer", lo, hi)
    return make("numeric", lo, hi)


def _counts(values: Any) -> list[tuple[Any, int]]:
    import pandas as pd

    counts = pd.Series(values).value_counts(sort=False)
    items = [(_python(v), int(c)) for v, c in counts.items()]
    items.sort(key=lambda item: (-item[1], str(item[0])))
    return items[: MAX_CATEGORIES + 1]


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _require(path: Path, columns: list[str], wanted: Sequence[str]) -> None:
    for name in wanted:
        if name not in columns:
            raise InitError(f"{path}: {missing_column_message(name, columns)}")


def missing_column_message(name: str, columns: Sequence[str]) -> str:
    """Say that ``name`` is not a column, with the closest names (or the columns there are)."""
    close = difflib.get_close_matches(name, list(columns), n=3, cutoff=0.6)
    if close:
        return f"no column {name!r}; did you mean {' or '.join(repr(c) for c in close)}?"
    shown = ", ".join(repr(c) for c in list(columns)[:20])
    more = f" and {len(columns) - 20} more" if len(columns) > 20 else ""
    return f"no column {name!r}; the columns are {shown}{more}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------- drafting


def slug(text: str) -> str:
    """A Kubernetes-style name (lowercase alphanumerics and ``-``, at most 53) from ``text``."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:53].strip("-")
    return name or "model"


def draft_contract(
    path: Path,
    label: str,
    *,
    id_column: str | None = None,
    time_column: str | None = None,
    positive: str | None = None,
    name: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
    today: date | None = None,
) -> Draft:
    """Profile ``path`` and draft the data contract for it.

    Args:
        path: A Parquet or CSV file.
        label: The binary label column.
        id_column: The row-id column (must be unique), if any.
        time_column: The event-time column (date-times, or text pandas parses as such), if any.
        positive: The positive label value as text; default: 1 / true, else the minority value.
        name: The model's name; default: a slug of the file's stem.
        sample_rows: Rows sampled from a large Parquet file for the categories.
        seed: Seed of that sample.
        today: The date written in the header (default: today, UTC).

    Raises:
        InitError: Naming the file, column or value that prevents a draft.
    """
    import yaml

    from argosy.data.contract import ContractError, parse_contract

    roles = [("--label", label)]
    roles += [("--id", id_column)] if id_column else []
    roles += [("--time", time_column)] if time_column else []
    seen: dict[str, str] = {}
    for flag, column in roles:
        if column in seen:
            raise InitError(f"{flag} and {seen[column]} name the same column {column!r}")
        seen[column] = flag
    model_name = name if name is not None else slug(path.name.split(".")[0])
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", model_name) or len(model_name) > 53:
        raise InitError(
            f"--name {model_name!r}: use lowercase letters, digits and '-', at most 53 characters, "
            "starting and ending with a letter or digit"
        )
    profile = profile_data(
        path, full_columns=[c for _, c in roles], sample_rows=sample_rows, seed=seed
    )
    if profile.rows == 0:
        raise InitError(f"{path}: has no rows")
    text = _render(
        profile,
        model_name,
        _label_values(profile, label, positive),
        _id_check(profile, id_column) if id_column else None,
        _time_range(profile, time_column) if time_column else None,
        today or datetime.now(UTC).date(),
    )
    try:
        contract = parse_contract(yaml.safe_load(text), Path("(draft)"))
    except (ContractError, yaml.YAMLError) as exc:  # pragma: no cover (a bug, not a user error)
        raise InitError(f"the drafted contract does not load, please report this: {exc}") from None
    return Draft(text, contract, profile)


def init_contract(
    data: Path,
    label: str,
    *,
    out: Path = DEFAULT_CONTRACT,
    force: bool = False,
    **options: Any,
) -> Draft:
    """Draft the contract for ``data`` (see :func:`draft_contract`) and write it to ``out``.

    Raises:
        InitError: ``out`` exists and ``force`` is false, or the draft failed.
    """
    from argosy.files import write_atomic

    if out.exists() and not force:
        raise InitError(f"{out} exists; pass --force to overwrite it, or --out another path")
    draft = draft_contract(data, label, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, draft.text)
    return draft


@dataclass(frozen=True)
class _Label:
    column: str
    positive: bool | int | str
    negative: bool | int | str
    rate: float
    counts: tuple[tuple[Any, int], ...]
    chosen: str


def _label_values(profile: DataProfile, column: str, positive: str | None) -> _Label:
    series = profile.full[column]
    missing = int(series.isna().sum())
    if missing:
        raise InitError(
            f"label column {column!r} has {missing} missing values; every row needs a label"
        )
    counts = [(_label_value(column, v), c) for v, c in _counts(series)]
    merged: dict[Any, int] = {}
    for value, count in counts:
        merged[value] = merged.get(value, 0) + count
    values = sorted(merged, key=lambda v: (-merged[v], str(v)))
    if len(values) != 2:
        shown = ", ".join(_show(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
        raise InitError(
            f"label column {column!r} must have exactly two values, it has {len(values)}: {shown}"
        )
    if positive is not None:
        match = [v for v in values if _matches(v, positive)]
        if not match:
            raise InitError(
                f"--positive {positive!r} is not a value of label column {column!r} "
                f"(its values: {', '.join(_show(v) for v in values)})"
            )
        pos, chosen = match[0], "chosen with --positive"
    elif set(values) == {0, 1}:  # True == 1, so this also covers true/false
        pos = next(v for v in values if v == 1)
        chosen = "1 / true is the positive class by default (--positive to choose)"
    else:
        pos = values[-1]
        chosen = "the minority value is the positive class by default (--positive to choose)"
    neg = next(v for v in values if v is not pos and v != pos)
    rate = merged[pos] / profile.rows
    ordered = tuple((v, merged[v]) for v in values)
    return _Label(column, pos, neg, rate, ordered, chosen)


def _label_value(column: str, value: Any) -> bool | int | str:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InitError(
        f"label column {column!r} holds {value!r}: a label must be a boolean, an integer or text"
    )


def _matches(value: Any, text: str) -> bool:
    if isinstance(value, bool):
        return text.strip().lower() == str(value).lower() or text.strip() == str(int(value))
    if isinstance(value, int):
        try:
            return float(text) == value
        except ValueError:
            return False
    return str(value) == text


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower()


def _id_check(profile: DataProfile, column: str) -> str:
    series = profile.full[column]
    missing = int(series.isna().sum())
    if missing:
        raise InitError(f"id column {column!r} has {missing} missing values; an id must be unique")
    duplicated = series[series.duplicated()]
    if len(duplicated):
        examples = ", ".join(repr(_python(v)) for v in duplicated.unique()[:3])
        raise InitError(
            f"id column {column!r} is not unique: {len(duplicated)} repeated values "
            f"(e.g. {examples})"
        )
    return column


def _time_range(profile: DataProfile, column: str) -> tuple[str, date, date, date, date]:
    import pandas as pd
    from pandas.api import types

    series = profile.full[column]
    if types.is_datetime64_any_dtype(series.dtype):
        times = series
    elif types.is_numeric_dtype(series.dtype) or types.is_bool_dtype(series.dtype):
        raise InitError(
            f"time column {column!r} is {series.dtype}, not date-times (store it as a timestamp)"
        )
    else:
        try:
            times = pd.to_datetime(series, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise InitError(
                f"time column {column!r} holds values that are not dates or times "
                f"({_first_line(exc)})"
            ) from None
    times = times.dropna()
    if not len(times):
        raise InitError(f"time column {column!r} has no values")
    if times.dt.tz is None:
        times = times.dt.tz_localize("UTC")
    first, last = times.min().date(), times.max().date()
    # A year of history before, five years of new data after: validation must not reject next
    # month's batch; tighten the range where older or later rows are errors.
    low, high = date(first.year - 1, 1, 1), date(last.year + 5, 1, 1)
    return column, first, last, low, high


_HEADER = """\
# DRAFT data contract, drafted by `argosy init` from {path}
# ({rows:,} rows{sampled}, {today}). Review it before `make run`: lines marked FORK: are
# decisions to check, and the comment above each feature and bound says what the profile saw
# and how the value was drafted. Unknown keys or wrong types fail loudly.

# FORK: the model's name: MLflow registered model, InferenceService, ONNX graph, dashboards.
name: {name}
description: {description}

# FORK: where data/ comes from. files: your files under data/, pinned by data.dvc and pulled
# from the DVC remote when absent.
source: files

# FORK: the row id (optional: late labels are joined on it) and the event time (optional: with
# it the split is time-ordered, without it a seeded split stratified on the label).
"""
_FEATURES = """
# FORK: the model's inputs, in input order. type: numeric | integer | boolean | categorical;
# nullable: missing values are legitimate (NaN to the model); min/max: valid range; a
# categorical lists its values, and `unseen: other` maps values outside them to one reserved
# code instead of rejecting them.
# Drafted from the profile: min/max are the observed range widened by {pad:.0%} of its span on
# each side and rounded outward (never below 0 for a column without negative values), so a new
# batch a little outside what was seen still passes; tighten them where the true bounds are
# known. nullable and null_rate: nulls were seen (null_rate is the observed share). Categories
# are listed most frequent first, with `unseen: other` where rare values were seen (a long tail).
features:
"""
_OTHERS = """
# FORK: columns in the data that are not model inputs (kept in the splits, never scored).
"""
_BOUNDS = """
# FORK: what validation accepts: row count and the share of positive labels.
# Drafted from {rows:,} rows: min a tenth of them (at least 100), max 100 times as many; the
# positive rate was {rate:.4g}: bounds from half of it to about twice it.
rows: {{min: {min_rows}, max: {max_rows}}}
label_rate: {{min: {rate_min}, max: {rate_max}}}

# FORK: categorical or boolean features whose every value the gate checks on its own.
# Drafted: up to two categorical (then boolean) features with 2 to {slice_values} values.
slices: {slices}

# FORK: the gate's primary metric (pr_auc | roc_auc | recall_at_fpr | precision_at_k) and the
# floors a model must clear on the test split.
# Drafted from the positive rate {rate:.4g} (a random ranking has a pr_auc about equal to it):
# pr_auc 1.5 times the rate (capped), roc_auc 0.6. Modest on purpose: raise them to what a
# useful model must reach once a first model shows what the data allows.
metric:
  primary: pr_auc
  floors: {{pr_auc: {pr_auc}, roc_auc: 0.6}}

# FORK: sizes and floors of the drift monitor: a window with fewer logged rows than min_rows is
# insufficient_data; live quality from late labels needs min_labelled_rows and min_positives.
# Drafted from the profile ({rows:,} rows, positive rate {rate:.4g}): min_rows a twentieth of
# the rows (200 to 20000), min_labelled_rows a fiftieth (100 to 5000), min_positives half the
# positives expected among those (5 to 30), pr_auc_min 1.25 times the rate (at most 0.5) and
# recall_min 0.3. Size them to the traffic and the labels a window really gets.
monitoring:
  min_rows: {monitor_rows}
  min_labelled_rows: {labelled}
  min_positives: {positives}
  pr_auc_min: {live_pr_auc}
  recall_min: 0.3
"""


def _render(
    profile: DataProfile,
    model_name: str,
    label: _Label,
    id_column: str | None,
    time: tuple[str, date, date, date, date] | None,
    today: date,
) -> str:
    roles = {label.column, id_column, time[0] if time else None}
    features: list[ColumnProfile] = []
    others: list[tuple[str, str]] = []
    for column in profile.columns.values():
        if column.name in roles:
            continue
        reason = _not_a_feature(column)
        if reason:
            others.append((column.name, reason))
        else:
            features.append(column)
    if not features:
        raise InitError(
            f"{profile.path}: no column can be a feature (besides the label, id and time columns: "
            + ", ".join(f"{n} ({r})" for n, r in others)
            + ")"
        )
    rate, rows = label.rate, profile.rows
    sampled = (
        f"; categories from {profile.sampled_rows:,} sampled rows"
        if profile.sampled_rows < rows
        else ""
    )
    text = _HEADER.format(
        path=profile.path,
        rows=rows,
        sampled=sampled,
        today=today.isoformat(),
        name=model_name,
        description=json.dumps(f"Drafted from {profile.path.name}"),
    )
    out: list[str] = [text.rstrip("\n")]
    if id_column:
        out.append(f"id: {_key(id_column)}")
    else:
        out.append("# none given (--id); label feedback needs one to join late labels on.")
        out.append("id: null")
    if time:
        column, first, last, low, high = time
        out += [
            f"time: {_key(column)}",
            f"# observed {first} .. {last} (UTC); drafted from a year before to five years after.",
            f'time_range: {{min: "{low.isoformat()}", max: "{high.isoformat()}"}}',
        ]
    else:
        out.append("# none given (--time); the split is stratified on the label.")
        out += ["time: null", "time_range: null"]
    counts = ", ".join(f"{_show(v)} {c:,} rows" for v, c in label.counts)
    out += [
        "",
        "# FORK: the binary label and which of its values is the positive class.",
        f"# observed {counts};",
        f"# {label.chosen}.",
        f"label: {{column: {_key(label.column)}, positive: {_scalar(label.positive)}, "
        f"negative: {_scalar(label.negative)}}}",
        _FEATURES.format(pad=RANGE_PAD).rstrip("\n"),
    ]
    for column in features:
        out += _feature_lines(column)
    out.append(_OTHERS.rstrip("\n"))
    out += [f"#   {name}: {reason}" for name, reason in others]
    out.append(f"other_columns: {_flow([_key(n) for n, _ in others], indent=2)}")
    low, high = _label_rate(rate)
    labelled = min(5_000, max(100, rows // 50))
    out.append(
        _BOUNDS.format(
            rows=rows,
            rate=rate,
            min_rows=min(rows, max(100, rows // 10)),
            max_rows=rows * 100,
            rate_min=_number(low),
            rate_max=_number(high),
            slice_values=MAX_SLICE_VALUES,
            slices=_flow([_key(s) for s in _slices(features)], indent=2),
            pr_auc=_number(
                max(_round_sig(min(1.5 * rate, rate + (1 - rate) / 4, 0.9), down=True), 0.001)
            ),
            monitor_rows=min(20_000, max(200, rows // 20)),
            labelled=labelled,
            positives=min(30, max(5, round(labelled * rate / 2))),
            live_pr_auc=_number(max(_round_sig(min(0.5, 1.25 * rate), down=True), 0.001)),
        )
    )
    return "\n".join(out)


def _not_a_feature(column: ColumnProfile) -> str | None:
    if column.name in RESERVED_COLUMNS:
        return "its name is reserved for the prediction log; rename it to make it a feature"
    reasons = {
        "text": (
            f"{column.distinct:,} distinct values in {column.rows - column.nulls:,} rows: "
            "likely an identifier or free text"
        ),
        "datetime": "date-times are only the event time (--time), never a model input",
        "empty": "every value is missing",
        "unsupported": f"values of type {column.dtype} are not numbers, booleans or text",
    }
    return reasons.get(column.kind)


def _feature_lines(column: ColumnProfile) -> list[str]:
    nulls = f"nulls {column.null_rate:.1%}"
    described = f"{column.kind} ({column.dtype}); {nulls}; {column.distinct:,} distinct"
    entries: dict[str, str] = {"type": column.kind}
    if column.nulls:
        entries["nullable"] = "true"
        entries["null_rate"] = _number(_null_rate(column.null_rate))
    if column.kind in ("numeric", "integer"):
        low, high = _widen(
            column.minimum or 0.0, column.maximum or 0.0, integer=column.kind == "integer"
        )
        described += f"; observed {column.minimum or 0:.6g} .. {column.maximum or 0:.6g}"
        entries["min"], entries["max"] = _number(low), _number(high)
    key = _key(column.name)
    if column.kind != "categorical":
        body = ", ".join(f"{k}: {v}" for k, v in entries.items())
        return [f"  # {described}", f"  {key}: {{{body}}}"]
    values = [str(v) for v, _ in column.counts]
    if column.long_tail:
        entries["unseen"] = "other"
        described += "; rare values seen, so unseen ones map to `other`"
    lines = [f"  # {described}", f"  {key}:"]
    lines += [f"    {k}: {v}" for k, v in entries.items()]
    lines.append(f"    values: {_flow([json.dumps(v) for v in values], indent=6)}")
    return lines


def _slices(features: list[ColumnProfile]) -> list[str]:
    def fits(c: ColumnProfile) -> bool:
        return 2 <= c.distinct <= MAX_SLICE_VALUES

    chosen = [c.name for c in features if c.kind == "categorical" and fits(c)]
    chosen += [c.name for c in features if c.kind == "boolean" and fits(c)]
    return chosen[:2]


def _label_rate(rate: float) -> tuple[float, float]:
    low = _round_sig(rate / 2, down=True)
    raw_high = min(1 - (1 - rate) / 2, 2 * rate)
    high = _round_sig(raw_high, down=False)
    if high >= 1:
        high = raw_high
    return low, high


def _null_rate(rate: float) -> float:
    shown = _round_sig(rate, down=False)
    return shown if shown < 1 else rate


def _widen(low: float, high: float, *, integer: bool) -> tuple[float, float]:
    span = high - low
    pad = RANGE_PAD * span if span > 0 else max(abs(low) * RANGE_PAD, 1.0)
    step = 10.0 ** math.floor(math.log10(pad))
    if integer:
        step = max(step, 1.0)
    new_low = math.floor((low - pad) / step) * step
    new_high = math.ceil((high + pad) / step) * step
    if low >= 0:
        new_low = max(new_low, 0.0)
    if high <= 0:
        new_high = min(new_high, 0.0)
    digits = max(0, -math.floor(math.log10(step)))
    return round(new_low, digits), round(new_high, digits)


def _round_sig(value: float, *, down: bool, digits: int = 2) -> float:
    """Round ``value`` (> 0) to ``digits`` significant digits, down or up."""
    exponent = math.floor(math.log10(value)) - digits + 1
    step = 10.0**exponent
    ratio = value / step  # nudged so that float noise (36.9999...) does not cost a digit
    rounded = math.floor(ratio + 1e-9) if down else math.ceil(ratio - 1e-9)
    return round(rounded * step, max(0, -exponent))


def _number(value: float | int) -> str:
    """A number as YAML 1.1 reads it back as the same number (int when whole)."""
    if isinstance(value, bool):
        return str(value).lower()
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(float(value))
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
    return text


def _scalar(value: bool | int | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def _key(name: str) -> str:
    """A mapping key or list item as YAML reads it back as this exact string."""
    if _PLAIN_KEY.match(name) and name.lower() not in _YAML_WORDS:
        return name
    return json.dumps(name)


def _flow(items: list[str], *, indent: int, width: int = 100) -> str:
    """A YAML flow list, wrapped so lines stay within ``width`` (continuations at ``indent``)."""
    if not items:
        return "[]"
    lines, current = [], "["
    for i, item in enumerate(items):
        piece = item + ("]" if i == len(items) - 1 else ",")
        if len(current) > 1 and indent + 14 + len(current) + 1 + len(piece) > width:
            lines.append(current)
            current = " " * indent + piece
        else:
            current += ("" if current.endswith("[") else " ") + piece
    lines.append(current)
    return "\n".join(lines)
