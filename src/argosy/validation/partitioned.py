"""The suite on a partitioned data set: every partition in parallel, one merged verdict.

Each partition (one Parquet row group, see :mod:`argosy.data.partitions`) is validated on its own
by a Dask worker, so no process holds more than a partition. The results merge into one result
per expectation for the whole data set, naming the partitions that broke it:

- per-row expectations (nulls, ranges, categories, the event-time range) add up their counts; the
  first unexpected values are the data set's first, as partitions are in row order;
- per-column ones (the column set, dtypes) fail when any partition fails;
- the data-set-wide ones come from merged aggregates: the row count and the label rate from each
  partition's rows and positives, and the unique id from a Dask shuffle of the id column (hash
  partitioned; past :data:`TASK_SHUFFLE_PARTITIONS`, P2P, spilled to the workers' disks, so
  memory stays bounded by a partition).

Every merged result has the shape Great Expectations gives the same data as one table, with the
same counts (``tests/data/test_partitioned_validation.py`` holds them equal). Workers are a
``LocalCluster`` of forked processes (they start with Great Expectations imported), or the Dask
cluster ``$DASK_SCHEDULER_ADDRESS`` names (a ``DaskJob``'s job pod), whose workers must see the
data directory at the same path. A data set of one partition is validated in this process.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from argosy.data.contract import Contract, parse_contract
from argosy.data.partitions import DataSet, Partition, read
from argosy.validation.expectations import (
    DATA_SET_WIDE,
    MEAN,
    RESULT_FORMAT,
    ROW_COUNT,
    UNIQUE,
    Key,
    SuiteRunner,
    build_expectations,
    key_of,
)

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 30
TASK_SHUFFLE_PARTITIONS = 32
"""Up to this many partitions the id shuffle is Dask's task shuffle (a task per pair of input
and output partitions); above it, P2P, which streams through the workers' disks. P2P's fixed
cost (its extension's barriers) was about 0.45 s more at 4 partitions (1M rows)."""
SAMPLE = RESULT_FORMAT["partial_unexpected_count"]
STRINGS = {pa.string(): pd.StringDtype("python"), pa.large_string(): pd.StringDtype("python")}
"""String dtype, not object: Great Expectations checks their dtype once instead of per value (it
does not recognise the pyarrow-backed ``StringDtype`` as a string type)."""


@dataclass
class Evaluated:
    """One expectation's verdict on the whole data set.

    Attributes:
        expectation: The Great Expectations expectation.
        contract_key: The contract key it checks.
        result: Its ``ExpectationValidationResult`` for the whole data set.
        partitions: The partitions that broke it, each with its unexpected rows (None for a
            per-column expectation); empty for a data-set-wide verdict or a passing one.
    """

    expectation: Any
    contract_key: str
    result: Any
    partitions: list[tuple[str, int | None]] = field(default_factory=list)


@dataclass
class PartitionResult:
    """What a worker sends back for one partition: plain data, no Great Expectations objects."""

    rows: int = 0
    results: dict[Key, dict[str, Any]] = field(default_factory=dict)
    positives: int = 0
    id_nulls: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Duplicates:
    """Rows whose id occurs more than once (every occurrence counts, as Great Expectations does).

    Attributes:
        rows: How many rows.
        first: Up to :data:`SAMPLE` of them, lowest row numbers first: ``id`` and ``row``.
        by_partition: Rows per partition index.
    """

    rows: int
    first: pd.DataFrame
    by_partition: dict[int, int]


def naive_time(schema: pa.Schema, contract: Contract) -> bool:
    """The event-time column holds timezone-naive timestamps."""
    if not contract.time or contract.time not in schema.names:
        return False
    kind = schema.field(contract.time).type
    return pa.types.is_timestamp(kind) and kind.tz is None


def evaluate(
    data: DataSet, contract: Contract, workers: int = DEFAULT_WORKERS
) -> tuple[list[Evaluated], list[str]]:
    """Validate every partition and merge the results.

    Returns:
        Each expectation's verdict on the whole data set, in report order; and one message per
        partition that could not be read (then the verdicts are incomplete).
    """
    naive = naive_time(data.schema, contract)
    suite = build_expectations(contract, naive)
    # Empty partitions add nothing but a dtype guess; they are validated only when all are empty.
    parts = [p for p in data.partitions if p.rows] or [data.partitions[0]]
    id_column = contract.id if contract.id in data.schema.names else None
    task = functools.partial(_validate_partition, schema=data.schema, contract=contract)
    duplicates: Duplicates | None = None
    if len(parts) == 1:
        partials = [task(parts[0])]
        _log_partition(1, 1, parts[0], partials[0])
        if id_column and not partials[0].error:
            duplicates = _duplicates(_ids(parts[0], data.schema, id_column), data.offsets)
    else:
        from distributed import as_completed

        with _client(min(workers, len(parts))) as client:
            futures = client.map(task, parts, pure=False)
            pending = _unique_on_dask(client, data, parts, id_column) if id_column else []
            index = {future.key: i for i, future in enumerate(futures)}
            partials = [PartitionResult()] * len(parts)
            for done, future in enumerate(as_completed(futures), start=1):
                i = index[future.key]
                partials[i] = future.result()
                _log_partition(done, len(parts), parts[i], partials[i])
            if pending and not any(p.error for p in partials):
                duplicates = _merge_duplicates(client.gather(pending))
    problems = [
        f"{p.name}: not readable ({r.error})"
        for p, r in zip(parts, partials, strict=True)
        if r.error
    ]
    if problems:
        return [], problems
    return _merge(suite, contract, data, parts, partials, duplicates), []


def _log_partition(done: int, total: int, part: Partition, result: PartitionResult) -> None:
    failed = sum(not r["success"] for r in result.results.values())
    verdict = result.error or (f"{failed} failed" if failed else "ok")
    log.info(
        "partition %d/%d %s: %d rows, %d expectation(s), %s (%.1f s)",
        *(done, total, part.name, result.rows, len(result.results), verdict, result.seconds),
    )


@contextmanager
def _client(workers: int) -> Iterator[Any]:
    """A client of ``$DASK_SCHEDULER_ADDRESS``, or of a LocalCluster started (and stopped) here."""
    import dask
    import dask.dataframe  # before the workers fork: the id shuffle runs on it
    from distributed import Client, LocalCluster

    address = os.environ.get(SCHEDULER_ENV, "")
    if address:
        with Client(address, timeout=f"{CONNECT_TIMEOUT_S}s") as client:
            yield client
        return
    # Forked workers start with this process's imports: Great Expectations alone takes ~3 s to
    # import, more than validating a partition. The fork happens on distributed's own threads
    # while this one waits; nothing of ours runs a thread, and no Great Expectations context
    # exists yet (Python 3.12+ warns about forking a multi-threaded process all the same).
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a line per worker event, and a WARNING per P2P shuffle
    try:
        with (
            dask.config.set({"distributed.worker.multiprocessing-method": "fork"}),
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                # No dashboard; its HTTP server on any free port, never a clash on 8787.
                scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
                silence_logs=False,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    finally:
        quiet.setLevel(level)


# ---------------------------------------------------------------------------- on the workers


@functools.lru_cache(maxsize=2)
def _runner(contract_json: str, naive: bool) -> SuiteRunner:
    """The partition suite, built once per worker process (and contract)."""
    import json

    contract = parse_contract(json.loads(contract_json))
    suite = build_expectations(contract, naive)
    return SuiteRunner(contract, [e for e, _ in suite if e.expectation_type not in DATA_SET_WIDE])


def _validate_partition(part: Partition, schema: pa.Schema, contract: Contract) -> PartitionResult:
    """Run the per-partition expectations on one partition."""
    started = time.perf_counter()
    try:
        table = read(part, schema)
    except (pa.ArrowException, OSError) as exc:
        return PartitionResult(error=str(exc))
    frame = table.to_pandas(types_mapper=STRINGS.get)
    del table
    # Row numbers of the whole data set, so the unexpected rows reported are the data set's.
    frame.index = pd.RangeIndex(part.offset, part.offset + len(frame))
    runner = _runner(contract.model_dump_json(), naive_time(schema, contract))
    results, _ = runner.run(frame)
    label, id_column = contract.label.column, contract.id
    return PartitionResult(
        rows=len(frame),
        results={k: _plain(r) for k, r in results.items()},
        positives=int(contract.labels(frame).sum()) if label in frame.columns else 0,
        id_nulls=int(frame[id_column].isna().sum()) if id_column in frame.columns else 0,
        seconds=time.perf_counter() - started,
    )


def _plain(result: Any) -> dict[str, Any]:
    data = result.to_json_dict()
    return {k: data[k] for k in ("success", "result", "exception_info")}


def _ids(part: Partition, schema: pa.Schema, column: str) -> pd.DataFrame:
    """The partition's non-null ids (``id``), their shuffle keys (``key``) and row numbers."""
    ids = read(part, schema, [column]).column(0).combine_chunks()
    valid = ids.is_valid().to_numpy(zero_copy_only=False)
    ids = ids.filter(valid)
    return pd.DataFrame(
        {
            "id": ids.to_pandas(types_mapper=pd.ArrowDtype),
            "key": id_keys(ids),
            "row": part.offset + np.flatnonzero(valid),
        }
    )


_BASE = np.uint64(0x100000001B3)
_MIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def id_keys(values: pa.Array) -> np.ndarray:
    """A uint64 per value, equal for equal values: what the id shuffle partitions on.

    Equal ids must reach the same shuffle partition; hashing the values themselves would cost
    pandas' per-object hash (most of the unique check's time for string ids). Strings and bytes
    get a polynomial hash of their bytes computed on Arrow's buffers (a few numpy passes), other
    types pandas' hash of their numpy values. Only the balance of the partitions depends on the
    hash's quality, never the verdict: duplicates are found by comparing the ids themselves.
    """
    kind = values.type
    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        return pd.util.hash_array(values.to_numpy(zero_copy_only=False))
    values = values.cast(pa.large_binary())
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], np.int64, n + 1, values.offset * 8)
    lengths = np.diff(offsets)
    keys = lengths.astype(np.uint64)
    if offsets[-1] > offsets[0]:
        data = np.frombuffer(values.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
        filled = lengths > 0
        starts = offsets[:-1][filled] - offsets[0]
        rows = np.repeat(np.arange(len(starts)), lengths[filled])
        powers = np.cumprod(np.full(int(lengths.max()), _BASE, np.uint64))
        with np.errstate(over="ignore"):
            terms = data.astype(np.uint64) * powers[np.arange(len(data)) - starts[rows]]
            keys[filled] += np.add.reduceat(terms, starts)
    with np.errstate(over="ignore"):  # a 64-bit finaliser spreads the bits for ``key % n``
        keys ^= keys >> np.uint64(33)
        keys *= _MIX[0]
        keys ^= keys >> np.uint64(33)
        keys *= _MIX[1]
        keys ^= keys >> np.uint64(33)
    return keys


def _duplicates(ids: pd.DataFrame, offsets: list[int]) -> Duplicates:
    """The rows of ``ids`` whose id occurs twice or more within it."""
    values = pa.array(ids["id"])  # chunked when the shuffle concatenated several pieces
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    codes = values.dictionary_encode().indices.to_numpy()
    repeated = ids[np.bincount(codes)[codes] > 1]
    where = np.searchsorted(offsets, repeated["row"].to_numpy(), side="right") - 1
    counts = Counter(where.tolist())
    first = repeated[["id", "row"]].nsmallest(SAMPLE, "row")
    return Duplicates(len(repeated), first, dict(counts))


def _unique_on_dask(client: Any, data: DataSet, parts: list[Partition], column: str) -> list[Any]:
    """Futures of :func:`_duplicates` on each hash partition of the id column."""
    import dask
    import dask.dataframe as dd

    meta = _ids(Partition(parts[0].path, 0, 0, 0), data.schema, column)
    ids = dd.from_map(_ids, parts, schema=data.schema, column=column, meta=meta)
    # Equal ids have equal keys, so they land in the same output partition, whatever partition
    # they came from.
    method = "tasks" if len(parts) <= TASK_SHUFFLE_PARTITIONS else "p2p"
    shuffled = ids.shuffle("key", npartitions=len(parts), shuffle_method=method)
    pieces = shuffled.to_delayed()
    return client.compute([dask.delayed(_duplicates)(p, data.offsets) for p in pieces])


def _merge_duplicates(parts: list[Duplicates]) -> Duplicates:
    counts: Counter[int] = Counter()
    for part in parts:
        counts.update(part.by_partition)
    first = pd.concat([p.first for p in parts]).nsmallest(SAMPLE, "row")
    return Duplicates(sum(p.rows for p in parts), first, dict(counts))


# ---------------------------------------------------------------------------- merging


def _merge(
    suite: list[tuple[Any, str]],
    contract: Contract,
    data: DataSet,
    parts: list[Partition],
    partials: list[PartitionResult],
    duplicates: Duplicates | None,
) -> list[Evaluated]:
    from great_expectations.core import ExpectationValidationResult

    rows = sum(p.rows for p in partials)
    out = []
    for expectation, contract_key in suite:
        where = key_of(expectation)
        kind = where[1]
        failing: list[tuple[str, int | None]] = []
        if kind == ROW_COUNT:
            merged = _aggregate(_between(expectation, rows), rows)
        elif kind == MEAN:
            if contract.label.column not in data.schema.names:
                continue
            rate = sum(p.positives for p in partials) / rows if rows else None
            merged = _aggregate(rate is not None and _between(expectation, rate), rate)
        elif kind == UNIQUE:
            if duplicates is None:
                continue
            values = duplicates.first["id"].tolist()
            result = _map_result(
                rows,
                rows - sum(p.id_nulls for p in partials),
                duplicates.rows,
                values,
                duplicates.first["row"].tolist(),
            )
            merged = {"success": duplicates.rows == 0, "result": result}
            failing = [
                (data.partitions[i].name, n) for i, n in sorted(duplicates.by_partition.items())
            ]
        elif where in partials[0].results:
            merged, failing = _merge_partitions(
                [(part.name, p.results[where]) for part, p in zip(parts, partials, strict=True)]
            )
        else:
            continue  # its column is missing: the column-set expectation says so
        out.append(
            Evaluated(
                expectation,
                contract_key,
                ExpectationValidationResult(
                    success=merged["success"],
                    expectation_config=expectation.configuration,
                    result=merged["result"],
                    exception_info=merged.get("exception_info") or _NO_EXCEPTION,
                ),
                failing if not merged["success"] else [],
            )
        )
    return out


_NO_EXCEPTION = {"raised_exception": False, "exception_traceback": None, "exception_message": None}


def _between(expectation: Any, value: float) -> bool:
    return bool(expectation.min_value <= value <= expectation.max_value)


def _aggregate(success: bool, observed: Any) -> dict[str, Any]:
    return {"success": bool(success), "result": {"observed_value": observed}}


def _merge_partitions(
    named: list[tuple[str, dict[str, Any]]],
) -> tuple[dict[str, Any], list[tuple[str, int | None]]]:
    """One expectation's partition results as one result, and the partitions that broke it."""
    raised = [r for _, r in named if (r.get("exception_info") or {}).get("raised_exception")]
    if raised:
        return raised[0], [(n, None) for n, r in named if r in raised]
    first = named[0][1]["result"]
    if "unexpected_count" not in first:  # a per-column verdict (dtype, column set)
        failing = [(n, r) for n, r in named if not r["success"]]
        return (failing[0][1] if failing else named[0][1]), [(n, None) for n, _ in failing]
    results = [r["result"] for _, r in named]
    element = sum(r["element_count"] for r in results)
    missing = sum(r["missing_count"] for r in results) if "missing_count" in first else None
    merged = _map_result(
        element,
        None if missing is None else element - missing,
        sum(r["unexpected_count"] for r in results),
        [v for r in results for v in r["partial_unexpected_list"]],
        [i for r in results for i in r["partial_unexpected_index_list"]],
    )
    failing = [(n, r["result"]["unexpected_count"]) for n, r in named if not r["success"]]
    return {"success": all(r["success"] for _, r in named), "result": merged}, failing


def _map_result(
    element: int, nonnull: int | None, unexpected: int, values: list[Any], rows: list[int]
) -> dict[str, Any]:
    """A per-row expectation's SUMMARY result, as Great Expectations computes it.

    ``nonnull`` is None for the expectations that do not count missing values apart
    (``expect_column_values_to_not_be_null``).
    """
    total = unexpected / element * 100 if element else None
    if nonnull is None:
        nonmissing = total
    else:
        nonmissing = unexpected / nonnull * 100 if element and nonnull else None
    values = values[:SAMPLE]
    result: dict[str, Any] = {
        "element_count": element,
        "unexpected_count": unexpected,
        "unexpected_percent": nonmissing,
        "partial_unexpected_list": values,
    }
    if nonnull is not None:
        result |= {
            "missing_count": element - nonnull,
            "missing_percent": (element - nonnull) / element * 100 if element else None,
            "unexpected_percent_total": total,
            "unexpected_percent_nonmissing": nonmissing,
        }
    common = sorted(Counter(values).most_common(SAMPLE), key=lambda vc: (-vc[1], vc[0]))
    result["partial_unexpected_counts"] = [{"value": v, "count": c} for v, c in common]
    result["partial_unexpected_index_list"] = rows[:SAMPLE]
    return result
