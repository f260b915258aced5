"""The data gate: the contract's Great Expectations suite on the raw data, one report for all of it.

``validate_dir`` validates the data set partition by partition, in parallel
(:mod:`argosy.validation.partitioned`), and writes one JSON summary and one Data Docs validation
result for the whole data set, headed by the verdict. A failure names the failing expectation, the
contract key it checks, how many rows broke it and the partitions they are in.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argosy import webassets
from argosy.data.contract import Contract
from argosy.data.partitions import DataSetError, scan
from argosy.validation.expectations import SUITE_NAME
from argosy.validation.partitioned import DEFAULT_WORKERS, Evaluated, evaluate

log = logging.getLogger(__name__)

MAX_NAMED = 5
"""Partitions a failure's summary names (result.json lists them all)."""


class DataValidationError(RuntimeError):
    """The data failed the suite; the message names every failing expectation."""


@dataclass
class ValidationOutcome:
    """What a validation run found.

    Attributes:
        success: Whether every expectation held and every file was readable.
        rows: Number of rows validated.
        evaluated: Number of expectations evaluated.
        partitions: Number of partitions the rows were validated in.
        failures: One entry per failing expectation or unreadable file.
        expectations: One entry per expectation evaluated: its type, column, contract key,
            verdict, unexpected rows and observed value on the whole data set.
    """

    success: bool
    rows: int
    evaluated: int
    partitions: int = 1
    failures: list[dict[str, Any]] = field(default_factory=list)
    expectations: list[dict[str, Any]] = field(default_factory=list)

    def message(self) -> str:
        """A human summary listing each failure and the rows it affected."""
        where = f"{self.rows} rows in {self.partitions} partition(s)"
        if self.success:
            return f"data validation passed: {self.evaluated} expectations on {where}"
        lines = [f"data validation failed: {len(self.failures)} problem(s) in {where}"]
        for failure in self.failures:
            lines.append(f"  - {failure['summary']}")
        return "\n".join(lines)


def _failure(expectation: str, summary: str, rows: int, **extra: Any) -> dict[str, Any]:
    return {"expectation": expectation, "summary": summary, "unexpected_count": rows, **extra}


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


def _describe(item: Evaluated, contract: Contract) -> dict[str, Any]:
    failure = _describe_result(item.result, contract)
    failure["contract_key"] = item.contract_key
    if item.partitions:
        failure["partitions"] = [
            {"partition": name, "unexpected_count": count} for name, count in item.partitions
        ]
        named = [f"{name} ({count} rows)" if count else name for name, count in item.partitions]
        more = len(named) - MAX_NAMED
        failure["summary"] += f"; in {', '.join(named[:MAX_NAMED])}" + (
            f" and {more} more partition(s)" if more > 0 else ""
        )
    failure["summary"] += f" [contract.yaml {item.contract_key}]"
    return failure


def _summary(item: Evaluated) -> dict[str, Any]:
    """The expectation's line in result.json: what it checks and what it saw."""
    info = item.result.result or {}
    observed = info.get("observed_value")
    return {
        "expectation": item.expectation.expectation_type,
        "column": getattr(item.expectation, "column", None),
        "contract_key": item.contract_key,
        "success": bool(item.result.success),
        "unexpected_count": info.get("unexpected_count"),
        "observed": None if observed is None else str(observed),
    }


def _outcome(
    evaluated: list[Evaluated], contract: Contract, rows: int, partitions: int
) -> ValidationOutcome:
    failures = [_describe(e, contract) for e in evaluated if not e.result.success]
    return ValidationOutcome(
        success=not failures,
        rows=rows,
        evaluated=len(evaluated),
        partitions=partitions,
        failures=failures,
        expectations=[_summary(e) for e in evaluated],
    )


def write_data_docs(
    docs_dir: Path,
    outcome: ValidationOutcome,
    evaluated: list[Evaluated],
    data_hash: str,
) -> None:
    """Data Docs with one validation result for the whole data set, headed by the verdict.

    The suite runs in parts (per column, per partition; see ``SuiteRunner`` and
    :mod:`argosy.validation.partitioned`); people read one result: every expectation, one run
    named after the data it judged, in a fresh context that holds nothing else. The pages open
    with the verdict and its reasons, naming the partitions of each failure.
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
    # One store write for the whole suite: add_expectation rewrites the stored suite every time.
    context.suites.add(
        gx.ExpectationSuite(
            name=SUITE_NAME,
            expectations=[item.expectation.copy(update={"id": None}) for item in evaluated],
        )
    )
    results = [item.result for item in evaluated]
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
            "batch_markers": {
                "data_hash": data_hash,
                "rows": outcome.rows,
                "partitions": outcome.partitions,
            },
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
        f"({outcome.partitions:,} partition(s)) of data <code>{html.escape(data_hash)}</code> "
        "(the contract: contract.yaml).</p>"
        + (f'<ul style="margin:8px 0 0 0">{items}</ul>' if items else "")
        + "</div>"
    )


def validate_dir(
    data_dir: Path,
    contract: Contract,
    report_dir: Path,
    data_hash: str = "untracked",
    workers: int = DEFAULT_WORKERS,
) -> ValidationOutcome:
    """Validate the files under ``data_dir``; write ``result.json`` and Data Docs to ``report_dir``.

    ``data_hash`` is ``data.dvc``'s hash of the data, recorded in the report and Data Docs;
    ``workers`` is the size of the LocalCluster that validates the partitions.

    Raises:
        DataValidationError: The data failed; the reports are written first.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    docs = report_dir / "data_docs"
    try:
        data = scan(data_dir)
    except DataSetError as exc:
        outcome = _unreadable(exc.problems, rows=0, partitions=0)
    else:
        log.info(
            "validating %d rows in %d partition(s) from %s",
            *(data.rows, len(data.partitions), data_dir),
        )
        evaluated, unreadable = evaluate(data, contract, workers)
        if unreadable:
            problems = [("readable_parquet", message) for message in unreadable]
            outcome = _unreadable(problems, data.rows, len(data.partitions))
        else:
            outcome = _outcome(evaluated, contract, data.rows, len(data.partitions))
            write_data_docs(docs, outcome, evaluated, data_hash)
    if not outcome.evaluated:
        shutil.rmtree(docs, ignore_errors=True)
    payload = {
        "success": outcome.success,
        "rows": outcome.rows,
        "partitions": outcome.partitions,
        "evaluated_expectations": outcome.evaluated,
        "data_hash": data_hash,
        "failures": outcome.failures,
        "expectations": outcome.expectations,
        "data_docs": "data_docs/index.html" if outcome.evaluated else None,
    }
    (report_dir / "result.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if not outcome.success:
        raise DataValidationError(outcome.message())
    return outcome


def _unreadable(problems: list[tuple[str, str]], rows: int, partitions: int) -> ValidationOutcome:
    """The outcome when data could not be read: no expectation was evaluated."""
    failures = [_failure(check, message, 0) for check, message in problems]
    return ValidationOutcome(False, rows, 0, partitions, failures)
