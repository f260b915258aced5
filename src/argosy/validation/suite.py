"""Build and run the Great Expectations 1.x suite that guards the raw data.

The suite is derived from the data contract: its columns, each feature's dtype, nullability, range
and categories, the unique id, the label's values and positive rate, the row count and the event
time's range. A run writes a JSON summary and Data Docs HTML; a failure names each failing
expectation, the contract key it checks and how many rows broke it.
"""

from __future__ import annotations

import html
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

from argosy import webassets
from argosy.data.contract import Contract

log = logging.getLogger(__name__)

SUITE_NAME = "data"
TABLE = "table"
_INT_TYPES = [
    *("int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64"),
    *("uint8", "uint16", "uint32", "uint64", "UInt8", "UInt16", "UInt32", "UInt64"),
]
_BOOL_TYPES = ["bool", "boolean"]
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


def positive_column(contract: Contract) -> str:
    """The derived 0/1 column whose mean is the positive rate (the label may hold strings)."""
    return f"{contract.label.column} == {contract.label.positive!r}"


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


_ANY_TYPES = _INT_TYPES + _FLOAT_TYPES + _BOOL_TYPES + _STRING_TYPES


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


def _describe(result: Any, contract: Contract, key: str) -> dict[str, Any]:
    failure = _describe_result(result, contract)
    failure["contract_key"] = key
    failure["summary"] += f" [contract.yaml {key}]"
    return failure


def _describe_result(result: Any, contract: Contract) -> dict[str, Any]:
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
        missing = sorted(set(contract.raw_columns) - observed)
        extra = sorted(observed - set(contract.raw_columns))
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


def _naive_time(frame: pd.DataFrame, contract: Contract) -> bool:
    if not contract.time or contract.time not in frame.columns:
        return False
    dtype = frame[contract.time].dtype
    return pd.api.types.is_datetime64_dtype(dtype) and getattr(dtype, "tz", None) is None


def validate_frame(
    frame: pd.DataFrame,
    contract: Contract,
    docs_dir: Path | None = None,
    data_hash: str = "untracked",
) -> ValidationOutcome:
    """Run the suite on ``frame``; build Data Docs HTML into ``docs_dir`` when given.

    ``data_hash`` (``data.dvc``'s) names the run in Data Docs.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # One line per suite in our log instead of a progress bar per suite from the library.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("argosy")
    # One suite per column, run on a one-column frame, plus the table-level suite on the whole
    # frame. Great Expectations copies the batch's frame for every column-map metric; with the
    # whole 37-column frame that copying made validation ~6x slower (see docs/benchmarks.md).
    groups: dict[str, list[tuple[Any, str]]] = {}
    for expectation, key in build_expectations(contract, _naive_time(frame, contract)):
        name = getattr(expectation, "column", None) or TABLE
        groups.setdefault(name, []).append((expectation, key))
    derived = positive_column(contract)
    failures: list[dict[str, Any]] = []
    evaluated = 0
    all_results: list[Any] = []
    all_expectations: list[Any] = []
    for number, (name, expectations) in enumerate(groups.items(), start=1):
        if name == derived:
            if contract.label.column not in frame.columns:
                continue
            batch = pd.DataFrame({name: contract.labels(frame)})
        elif name == TABLE:
            batch = frame
        elif name in frame.columns:
            batch = frame[[name]]
        else:
            continue  # the table-level column-set expectation reports the missing column
        started = time.perf_counter()
        asset = source.add_dataframe_asset(name)
        suite = context.suites.add(gx.ExpectationSuite(name=f"{SUITE_NAME}.{name}"))
        for expectation, _ in expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=f"{SUITE_NAME}.{name}",
                data=asset.add_batch_definition_whole_dataframe("all"),
                suite=suite,
            )
        )
        run = definition.run(
            batch_parameters={"dataframe": batch},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
        evaluated += len(run.results)
        all_results += run.results
        all_expectations += [expectation for expectation, _ in expectations]
        # One expectation of each type per column: results come back in their own order.
        keys = {expectation.expectation_type: key for expectation, key in expectations}
        failed = [
            _describe(r, contract, keys[r.expectation_config.type])
            for r in run.results
            if not r.success
        ]
        failures += failed
        log.info(
            "suite %d/%d %s: %d expectation(s), %s (%.1f s)",
            *(number, len(groups), name, len(run.results)),
            f"{len(failed)} failed" if failed else "ok",
            time.perf_counter() - started,
        )
    outcome = ValidationOutcome(
        success=not failures, rows=len(frame), evaluated=evaluated, failures=failures
    )
    if docs_dir is not None:
        write_data_docs(docs_dir, outcome, all_expectations, all_results, data_hash)
    return outcome


def write_data_docs(
    docs_dir: Path,
    outcome: ValidationOutcome,
    expectations: list[Any],
    results: list[Any],
    data_hash: str,
) -> None:
    """Data Docs with one validation result for the whole run, headed by the verdict.

    The suite runs in per-column parts (for speed, see ``validate_frame``); people read one
    result: every expectation, one run named after the data it judged, in a fresh context that
    holds nothing else. The pages open with the verdict and its reasons.
    """
    import great_expectations as gx
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    shutil.rmtree(docs_dir, ignore_errors=True)
    docs_dir.mkdir(parents=True)
    context = gx.get_context(mode="ephemeral")
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
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for expectation in expectations:
        suite.add_expectation(expectation.copy(update={"id": None}))
    passed = sum(bool(r.success) for r in results)
    now = datetime.now(UTC)
    run_id = RunIdentifier(run_name=f"data-{data_hash}", run_time=now)
    result = ExpectationSuiteValidationResult(
        success=outcome.success,
        results=results,
        suite_name=SUITE_NAME,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else None,
        },
        meta={
            "great_expectations_version": gx.__version__,
            "run_id": run_id,
            "validation_time": now.isoformat(),
            "active_batch_definition": {
                "datasource_name": "argosy",
                "data_connector_name": "fluent",
                "data_asset_name": f"data ({outcome.rows} rows)",
                "batch_identifiers": {"data_hash": data_hash},
            },
            "batch_markers": {"data_hash": data_hash, "rows": outcome.rows},
            # What Data Docs print as "Data asset".
            "batch_spec": {"data_asset_name": f"data/ ({outcome.rows:,} rows, {data_hash})"},
        },
    )
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=SUITE_NAME),
        run_id=run_id,
        batch_identifier="data",
    )
    context.validation_results_store.set(key, result)
    context.build_data_docs()
    banner = _verdict_banner(outcome, passed, len(results), data_hash)
    # Offline: the pages load the vendored copies of their CDN assets (argosy.webassets).
    assets = webassets.copy_assets(docs_dir / "static" / "vendor")
    logo = docs_dir / "static" / "images" / "logo-long-vector.svg"
    for page in docs_dir.rglob("*.html"):
        text = webassets.localize(
            page.read_text(encoding="utf-8"), page, assets, logo if logo.is_file() else None
        )
        remote = webassets.remote_resources(text)
        if remote:
            log.warning("%s still loads %s", page, ", ".join(remote))
        head, tag, rest = text.partition("<body>")
        page.write_text(head + tag + banner + rest if tag else text, encoding="utf-8")


def _verdict_banner(outcome: ValidationOutcome, passed: int, total: int, data_hash: str) -> str:
    """The verdict, the counts and each failure, as the first thing on every Data Docs page."""
    color = "#1b5e20" if outcome.success else "#b3261e"
    verdict = "PASSED" if outcome.success else "FAILED"
    items = "".join(f"<li>{html.escape(f['summary'])}</li>" for f in outcome.failures)
    return (
        f'<div id="argosy-verdict" style="font-family:sans-serif;padding:16px 24px;'
        f'border-left:8px solid {color};background:#fafafa;margin:0 0 8px 0">'
        f'<h1 style="margin:0 0 8px 0;color:{color}">Data validation: {verdict}</h1>'
        f'<p style="margin:0">{passed} of {total} expectations held on {outcome.rows:,} rows '
        f"of data <code>{html.escape(data_hash)}</code> (the contract: contract.yaml).</p>"
        + (f'<ul style="margin:8px 0 0 0">{items}</ul>' if items else "")
        + "</div>"
    )


def validate_dir(
    data_dir: Path, contract: Contract, report_dir: Path, data_hash: str = "untracked"
) -> ValidationOutcome:
    """Validate the files under ``data_dir``; write ``result.json`` and Data Docs to ``report_dir``.

    ``data_hash`` is ``data.dvc``'s hash of the data, recorded in the report and Data Docs.

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
        outcome = validate_frame(frame, contract, report_dir / "data_docs", data_hash)
    payload = {
        "success": outcome.success,
        "rows": outcome.rows,
        "evaluated_expectations": outcome.evaluated,
        "data_hash": data_hash,
        "failures": outcome.failures,
        "data_docs": "data_docs/index.html" if frame is not None else None,
    }
    (report_dir / "result.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if not outcome.success:
        raise DataValidationError(outcome.message())
    return outcome
