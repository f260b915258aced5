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
from typing import Any

import numpy as np

from argosy.predlog import PARTITION_KEY, prediction_log_schema

log = logging.getLogger(__name__)

_DAY_US = 86_400_000_000
_CHUNK_ENTRIES = 512  # entries packed into one _Chunk on the request path (see _enqueue)
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
        # Dictionary encoding only where values repeat (the string columns: model name and
        # version, request ids). On the float features it cost 60% of the write, CPU the event
        # loop shares, and made the file larger: write_table of 10,000 rows of 31 features took
        # 20.8 ms for 1,633 kB with it, 8.5 ms for 1,125 kB without.
        options = {"compression": "zstd", "use_dictionary": self._dictionary_columns(table)}
        if self._local:
            # A path, not a Python file: Arrow writes and compresses without taking the GIL
            # for each chunk, so the event loop's thread is not kept waiting.
            self._pq.write_table(table, target, **options)
            self.fs.mv(target, final)
        else:
            with self.fs.open(target, "wb") as fh:
                self._pq.write_table(table, fh, **options)

    @staticmethod
    def _dictionary_columns(table: Any) -> list[str]:
        import pyarrow as pa

        return [f.name for f in table.schema if pa.types.is_string(f.type)]


_Entry = tuple[str | np.ndarray, int, np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]
"""One request's rows as ``submit`` queues them: request id, timestamp (us), row ids, features,
scores, decisions; or, from ``submit_rows``, one-row requests' ids (an object array) in place of
the request id, and no row ids.

A plain tuple, not a class: the garbage collector stops tracking a plain tuple that holds only
untracked values (strings, numbers, numpy arrays) the first time it sees one. Queued rows live for
up to a flush interval; as tracked objects they filled the oldest generation between flushes, and
each full collection that walked them stalled the event loop (one load test, other work on the
machine: p99 at c=16 23.9 ms with them tracked, 11.0 ms with the collector off).
"""


def _slice(entry: _Entry, start: int, stop: int) -> _Entry:
    """Rows ``start:stop`` of an entry (a request's rows, or ``submit_rows``' requests)."""
    first, ts, row_ids, x, scores, decisions = entry
    if type(first) is not str:
        first = first[start:stop]
    ids = None if row_ids is None else row_ids[start:stop]
    return (first, ts, ids, x[start:stop], scores[start:stop], decisions[start:stop])


class _Chunk:
    """Consecutive requests' rows packed into arrays, ready for the writer to hand to Arrow.

    Packing happens on the request path, ``_CHUNK_ENTRIES`` entries at a time (a few numpy
    calls: about 0.8 us a request for ``submit``'s entries of one request, 0.25 us for
    ``submit_rows``' entries of 14), so that the writer thread, which shares the GIL with the
    event loop, runs little Python of its own: each time it takes the GIL back it holds it up to
    the switch interval while the loop waits (building the tables on the writer, from the
    requests one by one, put the p99 at c=16 at 9 to 17 ms; 1.4 ms with no prediction log).

    Attributes:
        request_ids: One per request.
        ts: Each request's timestamp (microseconds since the epoch).
        row_ids: Each request's row ids, or None.
        counts: Rows per request (each at least 1).
        x: The rows' features, ``[rows, F]``.
        scores: The rows' scores.
        decisions: The rows' decisions.
        rows: Rows in the chunk.
        has_row_ids: Whether any request carried row ids.
    """

    __slots__ = (
        "counts",
        "decisions",
        "has_row_ids",
        "request_ids",
        "row_ids",
        "rows",
        "scores",
        "ts",
        "x",
    )

    def __init__(
        self,
        request_ids: list[str],
        ts: np.ndarray,
        row_ids: list[np.ndarray | None],
        counts: np.ndarray,
        x: np.ndarray,
        scores: np.ndarray,
        decisions: np.ndarray,
    ) -> None:
        self.request_ids = request_ids
        self.ts = ts
        self.row_ids = row_ids
        self.counts = counts
        self.x = x
        self.scores = scores
        self.decisions = decisions
        self.rows = len(scores)
        self.has_row_ids = any(ids is not None for ids in row_ids)

    @classmethod
    def pack(cls, entries: list[_Entry]) -> _Chunk:
        """Pack queued requests; the chunk keeps no reference to their own arrays."""
        request_ids: list[str] = []
        ts: list[int] = []
        row_ids: list[np.ndarray | None] = []
        counts: list[int] = []
        for entry in entries:
            ids = entry[0]
            if type(ids) is str:
                request_ids.append(ids)
                ts.append(entry[1])
                row_ids.append(entry[2])
                counts.append(len(entry[4]))
            else:  # submit_rows: one row per request
                k = len(ids)
                request_ids.extend(ids)
                ts.extend([entry[1]] * k)
                row_ids.extend([None] * k)
                counts.extend([1] * k)
        if len(entries) == 1:
            _, _, _, x, scores, decisions = entries[0]
        else:
            x = np.concatenate([e[3] for e in entries])
            scores = np.concatenate([e[4] for e in entries])
            decisions = np.concatenate([e[5] for e in entries])
        return cls(
            request_ids,
            np.array(ts, np.int64),
            row_ids,
            np.array(counts, np.int64),
            x,
            scores,
            decisions,
        )

    def part(self, request: int, start: int, stop: int, first: int) -> _Chunk:
        """Rows ``start:stop`` of the chunk, all of them request ``request``'s.

        ``first`` is the request's first row in the chunk (its row ids are sliced from there).
        """
        ids = self.row_ids[request]
        return _Chunk(
            [self.request_ids[request]],
            self.ts[request : request + 1],
            [None if ids is None else ids[start - first : stop - first]],
            np.array([stop - start], np.int64),
            self.x[start:stop],
            self.scores[start:stop],
            self.decisions[start:stop],
        )


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
        self._open: list[_Entry] = []  # requests not yet packed into a chunk
        self._queue: deque[_Chunk] = deque()  # packed, oldest first
        self._cond = threading.Condition(threading.Lock())
        self._held_rows = 0  # queued plus being written: the memory bound
        self._queued_rows = 0  # open or queued, not yet taken by the writer
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
        if (
            x.shape != (n, len(self.features))
            or len(decisions) != n
            or (row_ids is not None and len(row_ids) != n)
        ):
            raise ValueError(
                f"prediction log: x {x.shape}, {n} scores, {len(decisions)} decisions and "
                f"{'no' if row_ids is None else len(row_ids)} row ids do not describe the same "
                f"rows of {len(self.features)} features"
            )
        if n == 0:
            return
        if self.sample_rate < 1.0:
            if n == 1:
                if self._rng.random() >= self.sample_rate:
                    self.sampled_out_rows += 1
                    return
            else:
                keep = self._keep(n)
                if keep is None:
                    return
                x, scores, decisions = x[keep], scores[keep], decisions[keep]
                if row_ids is not None:
                    row_ids = [t for t, k in zip(row_ids, keep, strict=True) if k]
                n = len(scores)
        owner = x
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        if owner.base is not None:
            # A view of the request's own bytes (binary tensor data, gRPC raw contents): held
            # until the flush, it would keep the whole body (up to --max-body-bytes) alive.
            x = x.copy()
        # An object array, not a tuple: numpy arrays are invisible to the garbage collector, so
        # the entry holding it is untracked at the first collection (a tuple inside a tuple
        # takes two).
        ids = None if row_ids is None else np.array(row_ids, dtype=object)
        self._enqueue((request_id, time.time_ns() // 1000, ids, x, scores, decisions), n)

    def submit_rows(
        self,
        request_ids: list[str],
        x: np.ndarray,
        scores: np.ndarray,
        decisions: np.ndarray,
    ) -> None:
        """Queue requests of one row each, scored together (a batch), as one entry.

        The same rows as ``submit`` once per request, at a fraction of its cost per request.

        Args:
            request_ids: One per request, in row order.
            x: Their ``[N, F]`` matrix (not modified afterwards by the caller).
            scores: ``[N]`` probabilities of the positive class.
            decisions: ``[N]`` INT8 decisions.
        """
        n = len(scores)
        if x.shape != (n, len(self.features)) or len(decisions) != n or len(request_ids) != n:
            raise ValueError(
                f"prediction log: x {x.shape}, {n} scores, {len(decisions)} decisions and "
                f"{len(request_ids)} request ids do not describe the same rows of "
                f"{len(self.features)} features"
            )
        if n == 0:
            return
        if self.sample_rate < 1.0:
            keep = self._keep(n)
            if keep is None:
                return
            x, scores, decisions = x[keep], scores[keep], decisions[keep]
            request_ids = [r for r, k in zip(request_ids, keep, strict=True) if k]
            n = len(scores)
        ids = np.array(request_ids, dtype=object)  # untracked, as in submit
        self._enqueue((ids, time.time_ns() // 1000, None, x, scores, decisions), n)

    def _keep(self, n: int) -> np.ndarray | None:
        """Sample ``n`` rows: which to keep, or None (counted) when none is kept."""
        keep = np.fromiter((self._rng.random() < self.sample_rate for _ in range(n)), bool)
        kept = int(keep.sum())
        self.sampled_out_rows += n - kept
        return keep if kept else None

    def _enqueue(self, entry: _Entry, n: int) -> None:
        """Queue an entry of ``n`` rows, or count them dropped when the log is full."""
        with self._cond:
            room = self.capacity_rows - self._held_rows
            if not self._closing and 0 < room < n and type(entry[0]) is not str:
                # A batch of one-row requests keeps the rows that fit, as those requests
                # submitted one by one would.
                entry = _slice(entry, 0, room)
                self.dropped_rows += n - room
                n = room
            if self._closing or n > room:
                self.dropped_rows += n
                return
            self._held_rows += n
            before = self._queued_rows
            self._queued_rows = queued = before + n
            opened = self._open
            # Chunks end where the rows queued since the writer last took them reach a multiple
            # of batch_rows (an entry that crosses one is split there), so the writer's files
            # (``_batches``) hold batch_rows each, never more; and a chunk is packed at most
            # _CHUNK_ENTRIES entries at a time (the writer may be behind).
            start = 0
            cut = self.batch_rows - before % self.batch_rows  # rows to the next file's end
            while cut <= n - start:
                opened.append(
                    entry if start == 0 and cut == n else _slice(entry, start, start + cut)
                )
                self._queue.append(_Chunk.pack(opened))
                opened = []
                start += cut
                cut = self.batch_rows
            if start < n:
                opened.append(entry if start == 0 else _slice(entry, start, n))
                if len(opened) >= _CHUNK_ENTRIES:
                    self._queue.append(_Chunk.pack(opened))
                    opened = []
            self._open = opened
            # Wake the writer when its flush timer starts, and once when a batch is full.
            crossed = before < self.batch_rows <= queued
            if before == 0 or crossed:
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
            return not self._queue and not self._open
        self._thread.join(timeout_s)
        return not self._thread.is_alive() and self._held_rows == 0

    def metric_samples(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        """Row counters by outcome, for ``argosy_prediction_log_rows_total``."""
        return [
            ((("outcome", "written"),), self.written_rows),
            ((("outcome", "dropped"),), self.dropped_rows),
            ((("outcome", "sampled_out"),), self.sampled_out_rows),
            ((("outcome", "failed"),), self.failed_rows),
        ]

    def _take(self) -> deque[_Chunk]:
        """Wait for a batch (or the flush interval, or close) and take everything queued.

        The queue is swapped for an empty one, so the lock that ``submit`` (the event loop's
        thread) needs is held for a constant time, never for a walk over the queued requests.
        """
        with self._cond:
            deadline = None
            while True:
                if self._closing or self._queued_rows >= self.batch_rows:
                    break
                if self._queued_rows:
                    now = time.monotonic()
                    deadline = deadline or now + self.flush_interval_s
                    if now >= deadline:
                        break
                    self._cond.wait(deadline - now)
                else:
                    deadline = None
                    self._cond.wait()
            taken, self._queue = self._queue, deque()
            opened, self._open = self._open, []
            self._queued_rows = 0
        if opened:  # requests that did not fill a chunk before the timer (or close) came
            taken.append(_Chunk.pack(opened))
        return taken

    def _batches(self, taken: deque[_Chunk]) -> list[list[_Chunk]]:
        """``taken`` grouped into files of at most ``batch_rows`` rows (no chunk holds more)."""
        batches: list[list[_Chunk]] = []
        batch: list[_Chunk] = []
        rows = 0
        for chunk in taken:
            if batch and rows + chunk.rows > self.batch_rows:
                batches.append(batch)
                batch, rows = [], 0
            batch.append(chunk)
            rows += chunk.rows
        if batch:
            batches.append(batch)
        return batches

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
            taken = self._take()
            for batch in self._batches(taken):
                self._write(batch, schema)
            if not taken and self._closing:
                return

    def _write(self, batch: list[_Chunk], schema: Any) -> None:
        held = rows = sum(c.rows for c in batch)
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

    def _salvage(self, batch: list[_Chunk], schema: Any) -> tuple[list[_Chunk], int]:
        """Keep what encodes: chunk by chunk, then request by request, then row by row.

        Returns:
            The chunks that encode, and how many rows were rejected.
        """
        good: list[_Chunk] = []
        rejected = 0
        for chunk in batch:
            if self._encodes(chunk, schema):
                good.append(chunk)
                continue
            first = 0
            for request, count in enumerate(chunk.counts.tolist()):
                one = chunk.part(request, first, first + count, first)
                if self._encodes(one, schema):
                    good.append(one)
                else:
                    for row in range(first, first + count):
                        one = chunk.part(request, row, row + 1, first)
                        if self._encodes(one, schema):
                            good.append(one)
                        else:
                            rejected += 1
                first += count
        return good, rejected

    def _encodes(self, chunk: _Chunk, schema: Any) -> bool:
        try:
            self._chunk_tables(chunk, schema)
        except Exception:  # whatever Arrow refuses: the caller rejects the chunk's rows
            return False
        return True

    def _tables(self, batch: list[_Chunk], schema: Any) -> list[tuple[str, Any]]:
        """One Arrow table per UTC day of ``batch`` (raises when a value cannot be encoded).

        Built a chunk at a time: a numpy or Arrow call holds the GIL for its whole length, and
        the event loop's thread waits for it, so no single call may cover a whole batch. The
        chunks' tables are joined without copying.
        """
        import pyarrow as pa

        if len(batch) == 1:
            return self._chunk_tables(batch[0], schema)
        by_day: dict[str, list[Any]] = {}
        for chunk in batch:
            for date, table in self._chunk_tables(chunk, schema):
                by_day.setdefault(date, []).append(table)
        return [(date, pa.concat_tables(tables)) for date, tables in by_day.items()]

    def _chunk_tables(self, chunk: _Chunk, schema: Any) -> list[tuple[str, Any]]:
        import pyarrow as pa

        counts, rows, requests = chunk.counts, chunk.rows, len(chunk.request_ids)
        one_row_each = rows == requests  # every count is at least 1
        ts = chunk.ts if one_row_each else np.repeat(chunk.ts, counts)
        # Each request id is held once per request; Arrow repeats it for the request's rows.
        request_ids = pa.array(chunk.request_ids, pa.string())
        if not one_row_each:
            request_ids = request_ids.take(pa.array(np.repeat(np.arange(requests), counts)))
        if chunk.has_row_ids:
            ids: list[str | None] = []
            for request_row_ids, count in zip(chunk.row_ids, counts.tolist(), strict=True):
                ids.extend([None] * count if request_row_ids is None else request_row_ids)
            row_ids = pa.array(ids, pa.string())
        else:
            row_ids = pa.nulls(rows, pa.string())
        x = chunk.x
        scores = chunk.scores.astype(np.float32, copy=False)
        decisions = chunk.decisions.astype(np.int8, copy=False)
        days = ts // _DAY_US
        unique_days = np.unique(days)
        tables = []
        for day in unique_days:
            pick = np.flatnonzero(days == day) if len(unique_days) > 1 else slice(None)
            n = len(ts[pick])
            taken = pa.array(pick) if len(unique_days) > 1 else None
            columns = [
                request_ids if taken is None else request_ids.take(taken),
                pa.array(ts[pick], type=pa.timestamp("us", tz="UTC")),
                pa.repeat(pa.scalar(self.model_name, pa.string()), n),
                pa.repeat(pa.scalar(self.model_version, pa.string()), n),
                row_ids if taken is None else row_ids.take(taken),
                *(pa.array(x[pick, j]) for j in range(x.shape[1])),
                pa.array(scores[pick]),
                pa.array(decisions[pick]),
            ]
            date = dt.datetime.fromtimestamp(int(day) * 86_400, dt.UTC).strftime("%Y-%m-%d")
            tables.append((date, pa.Table.from_arrays(columns, schema=schema)))
        return tables


def _failing_sink(table: Any, day: str) -> None:
    raise OSError("prediction log sink is unavailable (see the error logged at start)")
