"""Asynchronous prediction log in Parquet, read later by the drift monitor.

The layout, columns and schema are :mod:`argosy.predlog`'s, which the drift monitor reads by.

Back-pressure: ``PredictionLogger.submit`` never blocks. Records wait in a queue bounded in rows
(``capacity_rows``); when it is full the request's rows are dropped and counted, so a slow or
stalled sink costs log completeness, never latency or memory. Rows still held by the writer count
against the bound until they are written, so memory stays within ``capacity_rows``. Sampling is
per row, at ``sample_rate``.

Failures: a batch with a row Arrow cannot encode is written without that row (the batch is
rebuilt request by request and, within a failing request, row by row); the rejected rows count as
``failed``. A batch the sink fails to write (the store is down) is dropped and counted as failed.
Both count in ``write_errors``, which the server exports for the alert rule.

Crashes: rows are written when ``batch_rows`` are queued or after ``flush_interval_s``, so a
SIGKILL (an OOM kill) loses the rows still queued or being written: about ``flush_interval_s``
of traffic, never more than ``capacity_rows`` rows; SIGTERM flushes them. A file being written
when the process dies is left under its temporary name on a local disk and removed when the next
server opens the directory (a local log directory belongs to one server; replicas share an object
store, which has no temporary names).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from argosy.predlog import PARTITION_KEY, prediction_log_schema

log = logging.getLogger(__name__)

_DAY_US = 86_400_000_000
_CHUNK_ENTRIES = 512  # requests per Arrow build step (see PredictionLogger._tables)
# The temporary name ParquetSink writes a local file under: `.` + the final name + `.tmp`.
_TMP_NAME = re.compile(r"\.part-\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet\.tmp")


Sink = Callable[[Any, str], None]
"""Writes one ``pyarrow.Table`` for one UTC date (``YYYY-MM-DD``)."""


class ParquetSink:
    """Write each batch as one Parquet file under ``<root>/date=<day>/``.

    Args:
        root: Local directory or fsspec URI.
    """

    def __init__(self, root: str) -> None:
        import fsspec
        import pyarrow.parquet as pq

        self._pq = pq
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self._local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        if self._local:
            self.remove_orphans()

    def remove_orphans(self) -> int:
        """Delete temporary files a killed server left on a local disk; return how many.

        Only this sink's own temporary names (``.part-<stamp>-<uuid>.parquet.tmp`` directly in a
        ``date=`` partition) are touched.
        """
        import pathlib

        removed = 0
        for path in pathlib.Path(self.root).glob(f"{PARTITION_KEY}=*/.part-*.parquet.tmp"):
            if _TMP_NAME.fullmatch(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.warning("prediction log: removed %d unfinished file(s) of a previous run", removed)
        return removed

    def __call__(self, table: Any, day: str) -> None:
        """Write ``table`` into the partition for ``day``."""
        directory = f"{self.root.rstrip('/')}/{PARTITION_KEY}={day}"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"part-{stamp}-{uuid.uuid4().hex}.parquet"
        self.fs.makedirs(directory, exist_ok=True)
        final = f"{directory}/{name}"
        target = f"{directory}/.{name}.tmp" if self._local else final
        if self._local:
            # A path, not a Python file: Arrow writes and compresses without taking the GIL
            # for each chunk, so the event loop's thread is not kept waiting.
            self._pq.write_table(table, target, compression="zstd")
            self.fs.mv(target, final)
        else:
            with self.fs.open(target, "wb") as fh:
                self._pq.write_table(table, fh, compression="zstd")


class _Entry(NamedTuple):
    """One request's rows, as the writer reads them.

    The queue holds each as a plain tuple of the same fields: the garbage collector stops
    tracking a plain tuple (not a subclass) that holds only untracked values (strings, numbers,
    numpy arrays) the first time it sees one. Queued rows live for up to a flush interval; as
    tracked objects they filled the oldest generation between flushes, and each full collection
    that walked them stalled the event loop (one load test, other work on the machine: p99 at
    c=16 23.9 ms with them tracked, 11.0 ms with the collector off).
    """

    request_id: str
    ts_us: int
    row_ids: tuple[str, ...] | None
    x: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray


class PredictionLogger:
    """Queue predictions on the request path; write them in Parquet batches on a thread.

    Args:
        sink: Writes a table for a day; ``ParquetSink(root)`` in production. When None, a
            ``ParquetSink`` for ``root`` is created on the writer thread (keeping pyarrow and
            fsspec imports off the server's start-up path).
        features: Ordered feature names.
        model_name: Logged with every row.
        model_version: Logged with every row.
        root: Where the default sink writes (ignored when ``sink`` is given).
        sample_rate: Fraction of rows logged, in [0, 1].
        capacity_rows: Most rows held in memory (queued or being written).
        batch_rows: Rows per written file at most.
        flush_interval_s: Longest a queued row waits before it is written.
    """

    def __init__(
        self,
        *,
        features: Sequence[str],
        model_name: str,
        model_version: str,
        sink: Sink | None = None,
        root: str | None = None,
        sample_rate: float = 1.0,
        capacity_rows: int = 100_000,
        batch_rows: int = 10_000,
        flush_interval_s: float = 10.0,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
        if sink is None and root is None:
            raise ValueError("give a sink or a root")
        if capacity_rows < 1 or batch_rows < 1:
            raise ValueError("capacity_rows and batch_rows must be positive")
        self.features = list(features)
        self.model_name = model_name
        self.model_version = model_version
        self.sample_rate = sample_rate
        self.capacity_rows = capacity_rows
        self.batch_rows = min(batch_rows, capacity_rows)
        self.flush_interval_s = flush_interval_s
        self._sink = sink
        self._root = root
        self._queue: deque[tuple[Any, ...]] = deque()  # _Entry fields, see _Entry
        self._cond = threading.Condition(threading.Lock())
        self._held_rows = 0  # queued plus being written: the memory bound
        self._closing = False
        self._thread: threading.Thread | None = None
        self._rng = random.Random()  # noqa: S311  (sampling, not security)
        self.written_rows = 0
        self.dropped_rows = 0
        self.sampled_out_rows = 0
        self.failed_rows = 0
        self.write_errors = 0

    @property
    def held_rows(self) -> int:
        """Rows currently in memory (queued or being written)."""
        return self._held_rows

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="argosy-predlog", daemon=True)
        self._thread.start()

    def submit(
        self,
        request_id: str,
        row_ids: list[str] | None,
        x: np.ndarray,
        scores: np.ndarray,
        decisions: np.ndarray,
    ) -> None:
        """Queue one request's rows, or drop them when the queue is full. Never blocks on I/O.

        Args:
            request_id: Request id (one per request, repeated on each row).
            row_ids: One id per row (the request's id tensor), or None.
            x: The request's ``[N, F]`` matrix (not modified afterwards by the caller).
            scores: ``[N]`` probabilities of the positive class.
            decisions: ``[N]`` INT8 decisions.
        """
        n = len(scores)
        if self.sample_rate < 1.0:
            if n == 1:
                if self._rng.random() >= self.sample_rate:
                    self.sampled_out_rows += 1
                    return
            else:
                keep = np.fromiter((self._rng.random() < self.sample_rate for _ in range(n)), bool)
                kept = int(keep.sum())
                self.sampled_out_rows += n - kept
                if not kept:
                    return
                x, scores, decisions = x[keep], scores[keep], decisions[keep]
                if row_ids is not None:
                    row_ids = [t for t, k in zip(row_ids, keep, strict=True) if k]
                n = kept
        ids = None if row_ids is None else tuple(row_ids)
        entry = (request_id, time.time_ns() // 1000, ids, x, scores, decisions)
        with self._cond:
            if self._closing or self._held_rows + n > self.capacity_rows:
                self.dropped_rows += n
                return
            self._held_rows += n
            self._queue.append(entry)
            if len(self._queue) == 1 or self._held_rows >= self.batch_rows:
                self._cond.notify()

    def close(self, timeout_s: float = 30.0) -> bool:
        """Write what is queued and stop the writer.

        Args:
            timeout_s: Longest to wait for the final writes.

        Returns:
            True when everything queued was written (or failed and was counted) in time.
        """
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is None:
            return not self._queue
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def metric_samples(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        """Row counters by outcome, for ``argosy_prediction_log_rows_total``."""
        return [
            ((("outcome", "written"),), self.written_rows),
            ((("outcome", "dropped"),), self.dropped_rows),
            ((("outcome", "sampled_out"),), self.sampled_out_rows),
            ((("outcome", "failed"),), self.failed_rows),
        ]

    def _take(self) -> list[_Entry]:
        """Wait for a batch (or the flush interval, or close) and return it, oldest first."""
        with self._cond:
            deadline = None
            while True:
                if self._closing:
                    break
                if self._held_rows >= self.batch_rows:
                    break
                if self._queue:
                    now = time.monotonic()
                    deadline = deadline or now + self.flush_interval_s
                    if now >= deadline:
                        break
                    self._cond.wait(deadline - now)
                else:
                    deadline = None
                    self._cond.wait()
            batch: list[_Entry] = []
            rows = 0
            while self._queue and rows < self.batch_rows:
                entry = _Entry._make(self._queue.popleft())
                batch.append(entry)
                rows += len(entry.scores)
            return batch

    def _run(self) -> None:
        if self._sink is None:
            try:
                self._sink = ParquetSink(self._root or "")
            except Exception:  # an unusable root must not kill the thread: count and drop
                log.exception(
                    "prediction log: cannot open %s; rows will be counted as failed", self._root
                )
                self._sink = _failing_sink
        schema = prediction_log_schema(self.features)
        while True:
            batch = self._take()
            if batch:
                self._write(batch, schema)
            elif self._closing:
                return

    def _write(self, batch: list[_Entry], schema: Any) -> None:
        held = rows = sum(len(e.scores) for e in batch)
        written = 0
        try:
            try:
                tables = self._tables(batch, schema)
            except Exception:  # a value Arrow cannot encode: keep every other row
                batch, rejected = self._salvage(batch, schema)
                rows -= rejected
                self.write_errors += 1
                self.failed_rows += rejected
                log.exception("prediction log: %d row(s) could not be encoded; rejected", rejected)
                tables = self._tables(batch, schema) if batch else []
            assert self._sink is not None  # noqa: S101  (set at thread start)
            for date, table in tables:
                self._sink(table, date)
                written += table.num_rows
        except Exception:  # any sink failure: count, drop, keep serving
            self.write_errors += 1
            self.failed_rows += rows - written
            log.exception("prediction log: failed to write %d rows; dropped", rows - written)
        finally:
            self.written_rows += written
            with self._cond:
                self._held_rows -= held

    def _salvage(self, batch: list[_Entry], schema: Any) -> tuple[list[_Entry], int]:
        """The entries that encode, request by request, then row by row; and the rows rejected."""
        good: list[_Entry] = []
        rejected = 0
        for entry in batch:
            if self._encodes(entry, schema):
                good.append(entry)
                continue
            for i in range(len(entry.scores)):
                one = _Entry(
                    entry.request_id,
                    entry.ts_us,
                    None if entry.row_ids is None else entry.row_ids[i : i + 1],
                    entry.x[i : i + 1],
                    entry.scores[i : i + 1],
                    entry.decisions[i : i + 1],
                )
                if self._encodes(one, schema):
                    good.append(one)
                else:
                    rejected += 1
        return good, rejected

    def _encodes(self, entry: _Entry, schema: Any) -> bool:
        try:
            self._tables([entry], schema)
        except Exception:  # whatever Arrow refuses: the caller rejects the entry's rows
            return False
        return True

    def _tables(self, batch: list[_Entry], schema: Any) -> list[tuple[str, Any]]:
        """One Arrow table per UTC day of ``batch`` (raises when a value cannot be encoded).

        Built ``_CHUNK_ENTRIES`` requests at a time: a numpy or Arrow call holds the GIL for its
        whole length, and the event loop's thread waits for it, so no single call may cover a
        whole batch. The chunks' tables are joined without copying.
        """
        import pyarrow as pa

        if len(batch) <= _CHUNK_ENTRIES:
            return self._chunk_tables(batch, schema)
        by_day: dict[str, list[Any]] = {}
        for start in range(0, len(batch), _CHUNK_ENTRIES):
            for date, table in self._chunk_tables(batch[start : start + _CHUNK_ENTRIES], schema):
                by_day.setdefault(date, []).append(table)
        return [(date, pa.concat_tables(tables)) for date, tables in by_day.items()]

    def _chunk_tables(self, batch: list[_Entry], schema: Any) -> list[tuple[str, Any]]:
        import pyarrow as pa

        counts = np.fromiter((len(e.scores) for e in batch), np.int64, len(batch))
        x = np.concatenate([e.x for e in batch]) if len(batch) > 1 else batch[0].x
        ts = np.repeat(np.fromiter((e.ts_us for e in batch), np.int64, len(batch)), counts)
        # Each request id is held once per request; Arrow repeats it for the request's rows.
        request_ids = pa.array([e.request_id for e in batch], pa.string())
        entry_of_row = np.repeat(np.arange(len(batch)), counts)
        ids: list[str | None] = []
        for e in batch:
            ids.extend(e.row_ids or [None] * len(e.scores))
        row_ids = pa.array(ids, pa.string())
        scores = np.concatenate([e.scores for e in batch]).astype(np.float32, copy=False)
        decisions = np.concatenate([e.decisions for e in batch]).astype(np.int8, copy=False)
        days = ts // _DAY_US
        unique_days = np.unique(days)
        tables = []
        for day in unique_days:
            pick = np.flatnonzero(days == day) if len(unique_days) > 1 else slice(None)
            n = len(ts[pick])
            columns = [
                request_ids.take(pa.array(entry_of_row[pick])),
                pa.array(ts[pick], type=pa.timestamp("us", tz="UTC")),
                pa.array([self.model_name] * n, pa.string()),
                pa.array([self.model_version] * n, pa.string()),
                row_ids if isinstance(pick, slice) else row_ids.take(pa.array(pick)),
                *(pa.array(x[pick, j]) for j in range(x.shape[1])),
                pa.array(scores[pick]),
                pa.array(decisions[pick]),
            ]
            date = dt.datetime.fromtimestamp(int(day) * 86_400, dt.UTC).strftime("%Y-%m-%d")
            tables.append((date, pa.Table.from_arrays(columns, schema=schema)))
        return tables


def _failing_sink(table: Any, day: str) -> None:
    raise OSError("prediction log sink is unavailable (see the error logged at start)")
