"""The Great Expectations 1.x suite derived from the data contract, and a runner for it.

The suite checks the contract's columns, each feature's dtype, nullability, range and categories,
the unique id, the label's values and positive rate, the row count and the event time's range.
Three of its expectations judge the data set as a whole (:data:`DATA_SET_WIDE`); a partitioned
run computes those from merged per-partition aggregates and runs the rest on every partition.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from argosy.data.contract import Contract

SUITE_NAME = "data"
TABLE = "table"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
"""What every run reports: counts, and the first five unexpected values and their rows."""

ROW_COUNT = "expect_table_row_count_to_be_between"
UNIQUE = "expect_column_values_to_be_unique"
MEAN = "expect_column_mean_to_be_between"
DATA_SET_WIDE = frozenset({ROW_COUNT, UNIQUE, MEAN})
"""Expectations whose verdict no single partition can give: the row count, the unique id and
the label rate."""

_INT_TYPES = [
    *("int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64"),
    *("uint8", "uint16", "uint32", "uint64", "UInt8", "UInt16", "UInt32", "UInt64"),
]
_BOOL_TYPES = ["bool", "boolean"]
_FLOAT_TYPES = ["float32", "float64", "Float32", "Float64"]
_STRING_TYPES = ["StringDtype", "str"]
_ANY_TYPES = _INT_TYPES + _FLOAT_TYPES + _BOOL_TYPES + _STRING_TYPES

Key = tuple[str, str]
"""An expectation's place in the suite: its column (or :data:`TABLE`) and its type; the suite
holds one expectation of each type per column."""


def positive_column(contract: Contract) -> str:
    """The derived 0/1 column whose mean is the positive rate (the label may hold strings)."""
    return f"{contract.label.column} == {contract.label.positive!r}"


def key_of(expectation: Any) -> Key:
    """Where ``expectation`` sits in the suite."""
    return getattr(expectation, "column", None) or TABLE, expectation.expectation_type


def _types(contract: Contract, name: str) -> list[str]:
    feature = contract.features.get(name)
    if feature is None:
        if name == contract.label.column:
            label = contract.label.positive
            return _STRING_TYPES if isinstance(label, str) else _INT_TYPES + _BOOL_TYPES
        return _INT_TYPES + _STRING_TYPES if name == contract.id else _ANY_TYPES
    if feature.type == "categorical":
        return _STRING_TYPES
    if feature.type == "boolean":
        return _BOOL_TYPES + _INT_TYPES + (_FLOAT_TYPES if feature.nullable else [])
    if feature.type == "integer" and not feature.nullable:
        return _INT_TYPES
    return _FLOAT_TYPES + _INT_TYPES


def build_expectations(contract: Contract, naive_time: bool = False) -> list[tuple[Any, str]]:
    """The expectations of the suite, in report order, each with the contract key it checks.

    Args:
        contract: The data contract.
        naive_time: The event-time column holds timezone-naive datetimes (bounds are naive too).
    """
    import great_expectations as gx

    e = gx.expectations
    out: list[tuple[Any, str]] = [
        (
            e.ExpectTableColumnsToMatchSet(column_set=list(contract.raw_columns), exact_match=True),
            "features / other_columns / id / time / label.column",
        ),
        (
            e.ExpectTableRowCountToBeBetween(
                min_value=contract.rows.min, max_value=contract.rows.max
            ),
            "rows",
        ),
    ]
    for name in contract.raw_columns:
        feature = contract.features.get(name)
        key = f"features.{name}" if feature is not None else _role(contract, name)
        if name == contract.time:
            out.append((e.ExpectColumnValuesToBeOfType(column=name, type_="Timestamp"), "time"))
        elif name not in contract.other_columns:
            out.append(
                (
                    e.ExpectColumnValuesToBeInTypeList(
                        column=name, type_list=_types(contract, name)
                    ),
                    f"{key}.type" if feature is not None else key,
                )
            )
        if (feature is None or not feature.nullable) and name not in contract.other_columns:
            nullable_key = f"{key}.nullable" if feature is not None else key
            out.append((e.ExpectColumnValuesToNotBeNull(column=name), nullable_key))
        if feature is None:
            continue
        if feature.type == "categorical" and feature.unseen == "reject":
            out.append(
                (
                    e.ExpectColumnValuesToBeInSet(
                        column=name, value_set=list(feature.values or [])
                    ),
                    f"{key}.values",
                )
            )
        elif feature.type == "boolean":
            out.append(
                (e.ExpectColumnValuesToBeInSet(column=name, value_set=[0, 1]), f"{key}.type")
            )
        elif feature.min is not None or feature.max is not None:
            out.append(
                (
                    e.ExpectColumnValuesToBeBetween(
                        column=name, min_value=feature.min, max_value=feature.max
                    ),
                    f"{key}.min/max",
                )
            )
    if contract.id:
        out.append((e.ExpectColumnValuesToBeUnique(column=contract.id), "id"))
    label = contract.label
    out += [
        (
            e.ExpectColumnValuesToBeInSet(
                column=label.column, value_set=[label.negative, label.positive]
            ),
            "label.positive / label.negative",
        ),
        (
            e.ExpectColumnMeanToBeBetween(
                column=positive_column(contract),
                min_value=contract.label_rate.min,
                max_value=contract.label_rate.max,
            ),
            "label_rate",
        ),
    ]
    if contract.time and contract.time_range:
        tz = None if naive_time else UTC
        out.append(
            (
                e.ExpectColumnValuesToBeBetween(
                    column=contract.time,
                    min_value=datetime.fromisoformat(contract.time_range.min).replace(tzinfo=tz),
                    max_value=datetime.fromisoformat(contract.time_range.max).replace(tzinfo=tz),
                ),
                "time_range",
            )
        )
    return out


def _role(contract: Contract, name: str) -> str:
    if name == contract.id:
        return "id"
    if name == contract.time:
        return "time"
    if name == contract.label.column:
        return "label.column"
    return "other_columns"


def skip_batch_fingerprints() -> None:
    """Stop the pandas engine hashing every batch it is given (about 40% of a partition's time).

    Great Expectations fingerprints each batch frame under ``HASH_THRESHOLD`` bytes with
    ``pd.util.hash_pandas_object``, only to record the digest among the batch markers; the suite
    runs one batch per column per partition, and the report records the data's DVC hash instead.
    The library has no setting for it, only this module constant (0: no frame is small enough);
    ``tests/data/test_validation_suite.py`` fails if a new version drops it.
    """
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


@contextmanager
def configurations_cached() -> Iterator[None]:
    """Within the block, each expectation builds its configuration once, not at every access.

    Great Expectations' ``Expectation.configuration`` is a property that turns the expectation's
    pydantic model into a new ``ExpectationConfiguration`` each time; validating one suite reads
    it about a hundred times per expectation, up to a third of a run's time on a small frame
    (100 rows: 1.15 s without, 0.75 to 0.96 s with; equal results). The expectations a run
    builds from its suite are not changed while it validates, so the block keeps each one's first
    configuration (and the expectation, so that its ``id`` is not reused) and puts the property
    back when it ends. ``tests/data/test_validation_suite.py`` checks the results against the
    library's own run.
    """
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__["configuration"]
    built: dict[int, tuple[Any, Any]] = {}

    def configuration(self: Any) -> Any:
        hit = built.get(id(self))
        if hit is None or hit[0] is not self:
            hit = built[id(self)] = (self, original.fget(self))
        return hit[1]

    Expectation.configuration = property(configuration)  # type: ignore[method-assign]
    try:
        yield
    finally:
        Expectation.configuration = original  # type: ignore[method-assign]


class SuiteRunner:
    """Validation definitions for some of the suite's expectations, built once, run on many frames.

    One suite per column, run on a one-column frame, plus the table-level suite on the whole
    frame: Great Expectations copies the batch's frame for every column-map metric, and with the
    whole 37-column frame that copying made validation ~6x slower (see docs/benchmarks.md).
    Building the context and definitions costs about as much as a run on 1,000 rows, so a worker
    builds them once for all the partitions it validates.
    """

    def __init__(self, contract: Contract, expectations: list[Any]) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        skip_batch_fingerprints()
        self.contract = contract
        context = gx.get_context(mode="ephemeral")
        # One line per run in our log instead of a progress bar per suite from the library.
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("argosy")
        groups: dict[str, list[Any]] = {}
        for expectation in expectations:
            groups.setdefault(key_of(expectation)[0], []).append(expectation)
        self.counts_rows = any(key_of(e)[1] == ROW_COUNT for e in expectations)
        self.definitions: dict[str, Any] = {}
        for name, members in groups.items():
            suite = context.suites.add(
                gx.ExpectationSuite(name=f"{SUITE_NAME}.{name}", expectations=members)
            )
            # Not added to the context's store: `run` validates through the definition's
            # validator and never reads it back.
            self.definitions[name] = gx.ValidationDefinition(
                name=f"{SUITE_NAME}.{name}",
                data=source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all"),
                suite=suite,
            )

    def run(self, frame: pd.DataFrame) -> tuple[dict[Key, Any], dict[str, float]]:
        """Validate ``frame``.

        Returns:
            Each expectation's result by its key, and each suite's seconds by its column. Suites
            of columns missing from ``frame`` do not run: the table-level column-set expectation
            reports the missing column.
        """
        from great_expectations.validator.v1_validator import Validator

        derived = positive_column(self.contract)
        results: dict[Key, Any] = {}
        seconds: dict[str, float] = {}
        for name, definition in self.definitions.items():
            if name == derived:
                if self.contract.label.column not in frame.columns:
                    continue
                batch = pd.DataFrame({name: self.contract.labels(frame)})
            elif name == TABLE:
                # Without the row count, the table-level suite checks the column set alone.
                batch = frame if self.counts_rows else frame.iloc[:0]
            elif name in frame.columns:
                batch = frame[[name]]
            else:
                continue
            started = time.perf_counter()
            # The definition's validator without ``ValidationDefinition.run``'s store checks and
            # result write (about a fifth of a run's fixed cost): the report is built from
            # these results, not from the store.
            validator = Validator(definition.batch_definition, RESULT_FORMAT, {"dataframe": batch})
            with configurations_cached():
                run = validator.validate_expectation_suite(definition.suite)
            seconds[name] = time.perf_counter() - started
            for result in run.results:
                results[name, result.expectation_config.type] = result
        return results, seconds
