"""Build and run the Great Expectations 1.x suite that guards the raw transactions.

The suite is derived from ``argosy.data.schema`` (columns, dtypes, nulls, ranges, categories) and
the ``validate`` params (row count, label-rate bounds, timestamp range). A run writes a JSON summary
and Data Docs HTML; a failure names each failing expectation and how many rows broke it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from argosy.config import ValidateParams
from argosy.data import schema

log = logging.getLogger(__name__)

SUITE_NAME = "transactions"
TABLE = "table"
_INT_TYPES = ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64"]
_FLOAT_TYPES = ["float32", "float64", "Float32", "Float64"]
_STRING_TYPES = ["StringDtype", "str"]


class DataValidationError(RuntimeError):
    """The data failed the suite; the message names every failing expectation."""


@dataclass
class ValidationOutcome:
    """What a validation run found.

    Attributes:
        success: Whether every expectation held and every file was readable.
        rows: Number of rows validated.
        failures: One entry per failing expectation or unreadable file.
        evaluated: Number of expectations evaluated.
    """

    success: bool
    rows: int
    evaluated: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    def message(self) -> str:
        """A human summary listing each failure and the rows it affected."""
        if self.success:
            return f"data validation passed: {self.evaluated} expectations on {self.rows} rows"
        lines = [f"data validation failed: {len(self.failures)} problem(s) in {self.rows} rows"]
        for failure in self.failures:
            lines.append(f"  - {failure['summary']}")
        return "\n".join(lines)


def _dtype_expectation(gx: Any, name: str) -> Any:
    if name == schema.TIMESTAMP_COLUMN:
        # Timezone-aware datetimes are checked per value; "Timestamp" is pandas' value type.
        return gx.expectations.ExpectColumnValuesToBeOfType(column=name, type_="Timestamp")
    if name in schema.FEATURES_BY_NAME:
        feature = schema.FEATURES_BY_NAME[name]
        if feature.categorical:
            types = _STRING_TYPES
        elif feature.integer and not feature.allow_nan:
            types = _INT_TYPES
        else:
            types = _FLOAT_TYPES
    elif name == "amount":
        types = _FLOAT_TYPES
    elif name == schema.LABEL_COLUMN:
        types = _INT_TYPES
    else:
        types = _STRING_TYPES
    return gx.expectations.ExpectColumnValuesToBeInTypeList(column=name, type_list=types)


def build_expectations(params: ValidateParams) -> list[Any]:
    """The expectations of the suite, in report order."""
    import great_expectations as gx

    e = gx.expectations
    out: list[Any] = [
        e.ExpectTableColumnsToMatchSet(column_set=list(schema.RAW_COLUMNS), exact_match=True),
        e.ExpectTableRowCountToBeBetween(min_value=params.min_rows, max_value=params.max_rows),
    ]
    for name in schema.RAW_COLUMNS:
        out.append(_dtype_expectation(gx, name))
        feature = schema.FEATURES_BY_NAME.get(name)
        if feature is None or not feature.allow_nan:
            out.append(e.ExpectColumnValuesToNotBeNull(column=name))
        if feature is not None and feature.categories is not None:
            out.append(
                e.ExpectColumnValuesToBeInSet(column=name, value_set=list(feature.categories))
            )
        elif feature is not None:
            out.append(
                e.ExpectColumnValuesToBeBetween(
                    column=name, min_value=feature.minimum, max_value=feature.maximum
                )
            )
    out += [
        e.ExpectColumnValuesToBeUnique(column=params.id_column),
        e.ExpectColumnValuesToBeBetween(column="amount", min_value=0.0, max_value=1e9),
        e.ExpectColumnValuesToBeInSet(column=schema.LABEL_COLUMN, value_set=[0, 1]),
        e.ExpectColumnMeanToBeBetween(
            column=schema.LABEL_COLUMN,
            min_value=params.label_rate_min,
            max_value=params.label_rate_max,
        ),
        e.ExpectColumnValuesToBeBetween(
            column=schema.TIMESTAMP_COLUMN,
            min_value=datetime.fromisoformat(params.timestamp_min).replace(tzinfo=UTC),
            max_value=datetime.fromisoformat(params.timestamp_max).replace(tzinfo=UTC),
        ),
    ]
    return out


def read_raw(data_dir: Path) -> tuple[pd.DataFrame | None, list[dict[str, Any]]]:
    """Read every Parquet file under ``data_dir``.

    Returns:
        The concatenated frame (None when nothing was readable) and one failure per bad file.
    """
    files = sorted(data_dir.glob("*.parquet")) if data_dir.is_dir() else []
    if not files:
        return None, [_failure("readable_data", f"{data_dir}: no Parquet files found", 0)]
    tables, failures = [], []
    for path in files:
        try:
            tables.append(pq.read_table(path))
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            failures.append(
                _failure("readable_parquet", f"{path}: not a readable Parquet file ({exc})", 0)
            )
    if failures or not tables:
        return None, failures
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as exc:
        return None, [_failure("consistent_files", f"files disagree on their schema ({exc})", 0)]
    # Arrow-backed strings: Great Expectations checks their dtype once instead of per value.
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype("python")}.get), []


def _failure(expectation: str, summary: str, rows: int, **extra: Any) -> dict[str, Any]:
    return {"expectation": expectation, "summary": summary, "unexpected_count": rows, **extra}


def _describe(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
    column = kwargs.get("column")
    label = f"{config.type}({column})" if column else config.type
    info = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        message = result.exception_info.get("exception_message", "raised an exception")
        return _failure(
            config.type, f"{label}: could not be evaluated: {message}", 0, column=column
        )
    count = int(info.get("unexpected_count") or 0)
    if config.type == "expect_table_columns_to_match_set":
        observed = set(info.get("observed_value") or [])
        missing = sorted(set(schema.RAW_COLUMNS) - observed)
        extra = sorted(observed - set(schema.RAW_COLUMNS))
        detail = f"missing columns {missing}" if missing else ""
        detail += (", " if detail and extra else "") + (
            f"unexpected columns {extra}" if extra else ""
        )
        return _failure(config.type, f"{label}: {detail}", 0, missing=missing, extra=extra)
    if count:
        percent = info.get("unexpected_percent") or 0.0
        sample = [str(v) for v in (info.get("partial_unexpected_list") or [])[:5]]
        summary = f"{label}: {count} rows ({percent:.3f}%) broke it, e.g. {sample}"
        return _failure(config.type, summary, count, column=column, sample=sample)
    observed = info.get("observed_value")
    observed = observed.item() if hasattr(observed, "item") else observed
    bounds = {k: kwargs.get(k) for k in ("min_value", "max_value", "type_list") if k in kwargs}
    summary = f"{label}: observed {observed!r}, expected {bounds}"
    return _failure(config.type, summary, 0, column=column, observed=str(observed))


def validate_frame(
    frame: pd.DataFrame, params: ValidateParams, docs_dir: Path | None = None
) -> ValidationOutcome:
    """Run the suite on ``frame``; build Data Docs HTML into ``docs_dir`` when given."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # One line per suite in our log instead of a progress bar per suite from the library.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        shutil.rmtree(docs_dir, ignore_errors=True)
        docs_dir.mkdir(parents=True)
        context.add_data_docs_site(
            site_name="argosy",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    source = context.data_sources.add_pandas("argosy")
    # One suite per column, run on a one-column frame, plus the table-level suite on the whole
    # frame. Great Expectations copies the batch's frame for every column-map metric; with the
    # whole 37-column frame that copying made validation ~6x slower (see docs/benchmarks.md).
    groups: dict[str, list[Any]] = {}
    for expectation in build_expectations(params):
        groups.setdefault(getattr(expectation, "column", None) or TABLE, []).append(expectation)
    failures: list[dict[str, Any]] = []
    evaluated = 0
    for number, (name, expectations) in enumerate(groups.items(), start=1):
        if name != TABLE and name not in frame.columns:
            continue  # the table-level column-set expectation reports the missing column
        started = time.perf_counter()
        asset = source.add_dataframe_asset(name)
        suite = context.suites.add(gx.ExpectationSuite(name=f"{SUITE_NAME}.{name}"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=f"{SUITE_NAME}.{name}",
                data=asset.add_batch_definition_whole_dataframe("all"),
                suite=suite,
            )
        )
        batch = frame if name == TABLE else frame[[name]]
        run = definition.run(
            batch_parameters={"dataframe": batch},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
        evaluated += len(run.results)
        failed = [_describe(r) for r in run.results if not r.success]
        failures += failed
        log.info(
            "suite %d/%d %s: %d expectation(s), %s (%.1f s)",
            *(number, len(groups), name, len(run.results)),
            f"{len(failed)} failed" if failed else "ok",
            time.perf_counter() - started,
        )
    if docs_dir is not None:
        context.build_data_docs()
    return ValidationOutcome(
        success=not failures, rows=len(frame), evaluated=evaluated, failures=failures
    )


def validate_dir(data_dir: Path, params: ValidateParams, report_dir: Path) -> ValidationOutcome:
    """Validate the files under ``data_dir``; write ``result.json`` and Data Docs to ``report_dir``.

    Raises:
        DataValidationError: The data failed; the reports are written first.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    frame, read_failures = read_raw(data_dir)
    if frame is None:
        outcome = ValidationOutcome(success=False, rows=0, evaluated=0, failures=read_failures)
        shutil.rmtree(report_dir / "data_docs", ignore_errors=True)
    else:
        log.info("validating %d rows from %s", len(frame), data_dir)
        outcome = validate_frame(frame, params, report_dir / "data_docs")
    payload = {
        "success": outcome.success,
        "rows": outcome.rows,
        "evaluated_expectations": outcome.evaluated,
        "failures": outcome.failures,
        "data_docs": "data_docs/index.html" if frame is not None else None,
    }
    (report_dir / "result.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if not outcome.success:
        raise DataValidationError(outcome.message())
    return outcome
