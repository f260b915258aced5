"""The prediction log: its Parquet contract, sampling, and back-pressure from a stalled sink."""

from __future__ import annotations

import re
import threading
import time
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from argosy.predlog import PREDICTION_LOG_ID_COLUMNS, prediction_log_columns, prediction_log_schema
from argosy.serving.predlog import PredictionLogger

from .conftest import (
    FEATURES,
    MODEL_NAME,
    infer_body,
    make_app,
    start_in_process,
    stop_in_process,
    valid_rows,
)

INFER = "/v2/models/example-model/infer"
PART_RE = re.compile(r"date=\d{4}-\d{2}-\d{2}/part-\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet$")


def logger(**kw: Any) -> PredictionLogger:
    return PredictionLogger(features=FEATURES, model_name=MODEL_NAME, model_version="7", **kw)


def submit(log: PredictionLogger, n: int, rid: str = "r", ids: list[str] | None = None) -> None:
    x = valid_rows(n)
    scores = np.linspace(0, 1, n, dtype=np.float32)
    log.submit(rid, ids, x, scores, (scores >= 0.5).astype(np.int8))


def test_columns_follow_the_contract() -> None:
    cols = prediction_log_columns(FEATURES)
    assert cols == [
        "request_id", "timestamp", "model_name", "model_version", "row_id",
        *FEATURES, "score", "decision",
    ]  # fmt: skip
    schema = prediction_log_schema(FEATURES)
    assert schema.names == cols
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("decision").type == pa.int8()
    assert schema.field("row_id").nullable
    assert all(schema.field(f).type == pa.float32() for f in FEATURES)
    assert PREDICTION_LOG_ID_COLUMNS[0] == "request_id"


def test_rows_are_written_as_date_partitioned_parquet(tmp_path: Path) -> None:
    # Given a logger writing to a directory
    log = logger(root=str(tmp_path / "log"), flush_interval_s=0.05)
    log.start()
    before = time.time()
    # When two requests are submitted, one with row ids
    submit(log, 3, "req-a", ["t1", "t2", "t3"])
    submit(log, 2, "req-b")
    # Then after close they are in Parquet files under date=YYYY-MM-DD/part-<ts>-<uuid>.parquet
    assert log.close(10)
    files = sorted(p for p in (tmp_path / "log").rglob("*") if p.is_file())
    assert files
    assert all(PART_RE.search(p.as_posix()) for p in files), files
    table = ds.dataset(tmp_path / "log", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 5
    rows = pq.read_table(files[0]).schema
    assert rows.names == prediction_log_columns(FEATURES)
    data = table.sort_by("request_id").to_pydict()
    assert data["request_id"] == ["req-a"] * 3 + ["req-b"] * 2
    assert data["row_id"] == ["t1", "t2", "t3", None, None]
    assert set(data["model_version"]) == {"7"}
    assert data["decision"] == [0, 1, 1, 0, 1]
    ts = data["timestamp"][0].timestamp()
    assert before - 1 <= ts <= time.time() + 1
    assert log.written_rows == 5
    assert log.dropped_rows == 0


def test_fsspec_uri_root(tmp_path: Path) -> None:
    log = logger(root="memory://argosy-test/predictions", flush_interval_s=0.05)
    log.start()
    submit(log, 4)
    assert log.close(10)
    import fsspec

    fs = fsspec.filesystem("memory")
    files = fs.glob("/argosy-test/predictions/date=*/part-*.parquet")
    assert len(files) == 1
    with fs.open(files[0], "rb") as fh:
        assert pq.read_table(fh).num_rows == 4


def test_sampling_rate_keeps_about_that_fraction(tmp_path: Path) -> None:
    written: list[int] = []
    log = logger(sink=lambda t, day: written.append(t.num_rows), sample_rate=0.25)
    log.start()
    for _ in range(400):
        submit(log, 10)
    assert log.close(10)
    assert log.written_rows + log.sampled_out_rows == 4000
    assert 800 <= sum(written) <= 1200  # 1000 expected; ±6 sigma is ~±165
    nothing = logger(sink=lambda t, day: written.append(-1), sample_rate=0.0)
    nothing.start()
    submit(nothing, 5)
    assert nothing.close(5)
    assert nothing.sampled_out_rows == 5
    assert -1 not in written


def test_sink_failure_is_counted_and_logging_continues(tmp_path: Path) -> None:
    calls = []

    def flaky(table: Any, day: str) -> None:
        calls.append(table.num_rows)
        if len(calls) == 1:
            raise OSError("bucket unavailable")

    log = logger(sink=flaky, flush_interval_s=0.05)
    log.start()
    submit(log, 3)
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    submit(log, 2)
    assert log.close(10)
    assert log.failed_rows == 3
    assert log.write_errors == 1
    assert log.written_rows == 2


def test_stalled_sink_drops_and_counts_without_blocking_or_growing(model_dir: Path) -> None:
    # Given a server whose prediction-log sink hangs on its first write
    release = threading.Event()
    entered = threading.Event()

    def stalled(table: Any, day: str) -> None:
        entered.set()
        release.wait(60)

    capacity = 500
    log = logger(sink=stalled, capacity_rows=capacity, batch_rows=100, flush_interval_s=0.01)
    log.start()
    srv = start_in_process(make_app(model_dir, predlog=log))
    client = srv.client()
    try:
        body = infer_body(valid_rows(100))
        assert client.request("POST", INFER, body)[0] == 200
        assert entered.wait(10), "the sink was never called"
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        # When many more rows are served than the log may hold
        n_requests = 300  # 30,000 rows: 3.6 MB of features if nothing were dropped
        slowest = 0.0
        for _ in range(n_requests):
            t0 = time.perf_counter()
            status, _, _ = client.request("POST", INFER, body)
            slowest = max(slowest, time.perf_counter() - t0)
            # Then every request is still answered
            assert status == 200
        grown = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        # And the request path did not wait for the sink (it is still stalled)
        assert not release.is_set()
        assert slowest < 1.0
        # And memory stays within the bound: held rows never exceed the capacity
        assert log.held_rows <= capacity
        assert grown < 1_000_000, f"traced memory grew by {grown} bytes"
        # And drops are counted, in the logger and in /metrics
        assert log.dropped_rows >= n_requests * 100 - capacity
        metrics = client.request("GET", "/metrics")[2].decode()
        assert f'outcome="dropped"}} {log.dropped_rows}' in metrics
    finally:
        release.set()
        client.close()
        stop_in_process(srv)
    assert log.close(10)
    assert log.written_rows + log.dropped_rows == (n_requests + 1) * 100


def test_one_unencodable_row_costs_only_itself(tmp_path: Path) -> None:
    # Given a batch of three requests, the second of which carries one row id Arrow cannot
    # encode (a lone surrogate: the server refuses these, the writer must not trust that)
    tables: list[Any] = []
    log = logger(sink=lambda t, day: tables.append(t), flush_interval_s=60)
    submit(log, 2, "req-a", ["a0", "a1"])
    submit(log, 3, "req-b", ["b0", "\ud800", "b2"])
    submit(log, 1, "req-c", ["c0"])
    # When the writer flushes them
    log.start()
    assert log.close(10)
    # Then every other row is written, in one file, and only the bad row counts as failed
    assert len(tables) == 1
    data = tables[0].to_pydict()
    assert data["row_id"] == ["a0", "a1", "b0", "b2", "c0"]
    assert data["request_id"] == ["req-a", "req-a", "req-b", "req-b", "req-c"]
    assert log.written_rows == 5
    assert log.failed_rows == 1
    assert log.write_errors == 1
    assert log.held_rows == 0


def test_an_unencodable_request_id_rejects_only_its_rows() -> None:
    tables: list[Any] = []
    log = logger(sink=lambda t, day: tables.append(t), flush_interval_s=60)
    submit(log, 2, "\udc00")
    submit(log, 4, "good")
    log.start()
    assert log.close(10)
    assert [t.num_rows for t in tables] == [4]
    assert log.failed_rows == 2
    assert log.written_rows == 4


def test_write_failures_are_exported_as_metrics(model_dir: Path) -> None:
    # Given a server whose prediction-log sink always fails
    def broken(table: Any, day: str) -> None:
        raise OSError("disk full")

    log = logger(sink=broken, flush_interval_s=0.01)
    log.start()
    srv = start_in_process(make_app(model_dir, predlog=log))
    client = srv.client()
    try:
        # When a request is served and its rows are due
        assert client.request("POST", INFER, infer_body(valid_rows(3)))[0] == 200
        deadline = time.monotonic() + 10
        while log.write_errors == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # Then /metrics shows the failed rows and the write error the alert rule watches
        text = client.request("GET", "/metrics")[2].decode()
        assert 'argosy_prediction_log_rows_total{outcome="failed"} 3' in text
        assert "# TYPE argosy_prediction_log_write_errors_total counter" in text
        assert "argosy_prediction_log_write_errors_total 1" in text
    finally:
        client.close()
        stop_in_process(srv)
        log.close(5)


def test_sink_removes_only_its_own_orphaned_temporary_files(tmp_path: Path) -> None:
    # Given a log directory with two orphans of the sink's temporary name, and look-alikes
    root = tmp_path / "log"
    stamp, uid = "20240102T030405123456Z", "ab" * 16
    orphans = [
        root / "date=2024-01-02" / f".part-{stamp}-{uid}.parquet.tmp",
        root / "date=2024-01-03" / f".part-{stamp}-{'cd' * 16}.parquet.tmp",
    ]
    others = [
        root / "date=2024-01-02" / f"part-{stamp}-{uid}.parquet",
        root / "date=2024-01-02" / f".part-{stamp}-{uid}.parquet.tmp.bak",
        root / "date=2024-01-02" / ".part-x.parquet.tmp",
        root / f".part-{stamp}-{uid}.parquet.tmp",  # not inside a date= partition
        root / "elsewhere" / f".part-{stamp}-{uid}.parquet.tmp",
    ]
    for path in orphans + others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    # When the sink opens the directory
    from argosy.serving.predlog import ParquetSink

    sink = ParquetSink(str(root))
    # Then the orphans are gone and nothing else was touched
    assert not any(p.exists() for p in orphans)
    assert all(p.exists() for p in others)
    # And a later write leaves no temporary file behind
    sink(pa.table({"a": [1]}), "2024-01-02")
    assert not list(root.rglob("*.tmp")) or set(root.rglob("*.tmp")) <= set(others)


def test_a_large_batch_is_built_in_chunks_and_written_whole_in_order() -> None:
    # Given 1,300 requests of one or two rows each (more than one Arrow build step holds)
    tables: list[Any] = []
    log = logger(sink=lambda t, day: tables.append(t), batch_rows=5_000, flush_interval_s=60)
    expected_ids, expected_requests = [], []
    for i in range(1300):
        n = 1 + i % 2
        ids = [f"{i}-{k}" for k in range(n)]
        submit(log, n, f"req-{i}", ids)
        expected_ids += ids
        expected_requests += [f"req-{i}"] * n
    # When the writer flushes them
    log.start()
    assert log.close(20)
    # Then one file holds every row, in submission order, with its request id and row id
    assert len(tables) == 1
    data = tables[0].select(["request_id", "row_id"]).to_pydict()
    assert data["row_id"] == expected_ids
    assert data["request_id"] == expected_requests
    assert log.written_rows == len(expected_ids)


def test_queued_rows_are_not_left_for_the_garbage_collector_to_walk(tmp_path: Path) -> None:
    """Queued rows are invisible to the garbage collector.

    They wait up to a flush interval: as tracked objects, every full collection between flushes
    would walk them while the event loop waits (a p99 stall).
    """
    import gc

    # Given a logger whose writer has not taken anything yet
    log = logger(root=str(tmp_path / "log"), flush_interval_s=60)
    gc.collect()
    before = len(gc.get_objects())
    # When 2,000 requests are queued, with and without row ids, and the collector runs once
    x = valid_rows(10)
    scores = np.linspace(0, 1, 10, dtype=np.float32)
    decisions = (scores >= 0.5).astype(np.int8)
    for i in range(1000):
        submit(log, 1, f"req-{i}")
        submit(log, 2, f"req-{i}-ids", [f"t{i}", f"u{i}"])
        if i % 10 == 0:  # and 100 batches of ten one-row requests
            log.submit_rows([f"b{i}-{k}" for k in range(10)], x, scores, decisions)
    gc.collect()
    # Then the collector tracks (almost) nothing more than before
    assert log.held_rows == 4000
    assert len(gc.get_objects()) - before < 100
    # And every queued row is still written
    log.start()
    assert log.close(10)
    assert log.written_rows == 4000


def test_requests_packed_together_across_midnight_go_to_their_own_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given requests of one and of three rows, some with row ids, whose timestamps cross
    # midnight UTC inside one packed chunk
    tables: list[tuple[str, Any]] = []
    log = logger(sink=lambda t, day: tables.append((day, t)), flush_interval_s=60)
    midnight_ns = 1_704_153_600 * 10**9  # 2024-01-02T00:00:00Z
    clock = iter(midnight_ns + k * 10**9 for k in range(-3, 3))
    monkeypatch.setattr("argosy.serving.predlog.time.time_ns", lambda: next(clock))
    for i in range(6):
        n = 3 if i % 2 else 1
        submit(log, n, f"req-{i}", [f"{i}-{k}" for k in range(n)] if i in (1, 4) else None)
    # When the writer flushes them
    log.start()
    assert log.close(10)
    # Then each day's file holds exactly its requests' rows, row ids where they were sent
    by_day = {day: t.select(["request_id", "row_id"]).to_pydict() for day, t in tables}
    assert sorted(by_day) == ["2024-01-01", "2024-01-02"]
    assert by_day["2024-01-01"]["request_id"] == ["req-0", *["req-1"] * 3, "req-2"]
    assert by_day["2024-01-01"]["row_id"] == [None, "1-0", "1-1", "1-2", None]
    assert by_day["2024-01-02"]["request_id"] == [*["req-3"] * 3, "req-4", *["req-5"] * 3]
    assert by_day["2024-01-02"]["row_id"] == [None] * 3 + ["4-0"] + [None] * 3
    assert log.written_rows == 12
    # And nothing took the path that rebuilds around rows Arrow cannot encode
    assert log.write_errors == 0
    assert log.failed_rows == 0


def test_requests_queued_while_the_writer_is_behind_stay_packed() -> None:
    """A slow sink must not turn each later request into its own tracked chunk."""
    import gc

    # Given a writer stalled inside its first write of a full batch
    release, entered = threading.Event(), threading.Event()

    def slow(table: Any, day: str) -> None:
        entered.set()
        release.wait(60)

    log = logger(sink=slow, batch_rows=1000, capacity_rows=50_000, flush_interval_s=60)
    log.start()
    submit(log, 1000, "first")
    assert entered.wait(10)
    gc.collect()
    before = len(gc.get_objects())
    # When 20,000 one-row requests queue up behind it
    for i in range(20_000):
        submit(log, 1, f"req-{i}")
    gc.collect()
    # Then they are held as a few packed chunks, not one tracked object per request
    assert len(gc.get_objects()) - before < 200
    assert log.held_rows == 21_000
    # And every row is written once the sink recovers
    release.set()
    assert log.close(20)
    assert log.written_rows == 21_000
    assert log.failed_rows == log.dropped_rows == 0


def test_a_request_with_no_rows_is_ignored_and_costs_no_other_row_its_id() -> None:
    tables: list[Any] = []
    log = logger(sink=lambda t, day: tables.append(t), flush_interval_s=60)
    submit(log, 2, "a")
    submit(log, 0, "empty")
    submit(log, 1, "b")
    log.start()
    assert log.close(10)
    assert [r for t in tables for r in t.column("request_id").to_pylist()] == ["a", "a", "b"]
    assert log.written_rows == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"x": valid_rows(2)[:, :-1]},
        {"decisions": np.zeros(3, np.int8)},
        {"ids": ["only-one"]},
    ],
    ids=["narrow x", "decisions", "row ids"],
)
def test_mismatched_arrays_are_refused_before_anything_is_queued(bad: dict[str, Any]) -> None:
    # Given a logger with one good request queued
    tables: list[Any] = []
    log = logger(sink=lambda t, day: tables.append(t), flush_interval_s=60)
    submit(log, 1, "good-1")
    # When a caller passes arrays that do not describe the same rows
    x = bad.get("x", valid_rows(2))
    scores = np.array([0.1, 0.9], np.float32)
    decisions = bad.get("decisions", np.array([0, 1], np.int8))
    with pytest.raises(ValueError, match="do not describe the same rows"):
        log.submit("bad", bad.get("ids"), x, scores, decisions)
    # Then nothing of it was counted or held, and the logger goes on writing
    assert log.held_rows == 1
    submit(log, 1, "good-2")
    log.start()
    assert log.close(10)
    assert [r for t in tables for r in t.column("request_id").to_pylist()] == ["good-1", "good-2"]
    assert log.written_rows == 2
    assert log.failed_rows == log.dropped_rows == 0


def test_a_batch_of_one_row_requests_logs_the_rows_of_submitting_each_alone() -> None:
    # Given the same rows logged as one batch entry and request by request, among requests of
    # several rows with row ids, across more than one packed chunk
    x = valid_rows(700, seed=3)
    scores = np.linspace(0, 1, 700, dtype=np.float32)
    decisions = (scores >= 0.5).astype(np.int8)
    ids = [f"q-{i}" for i in range(700)]
    logged = []
    for batched in (True, False):
        tables: list[Any] = []
        log = logger(sink=lambda t, day, tables=tables: tables.append(t), flush_interval_s=60)
        submit(log, 2, "before", ["b-0", "b-1"])
        if batched:
            log.submit_rows(ids[:300], x[:300], scores[:300], decisions[:300])
            log.submit_rows(ids[300:], x[300:], scores[300:], decisions[300:])
        else:
            for i in range(700):
                log.submit(ids[i], None, x[i : i + 1], scores[i : i + 1], decisions[i : i + 1])
        submit(log, 3, "after")
        log.start()
        assert log.close(10)
        assert log.written_rows == 705
        logged.append(pa.concat_tables(tables).drop_columns(["timestamp"]))
    # Then both wrote the same rows, in the same order, each with its own request id
    assert logged[0].equals(logged[1])
    assert logged[0].column("request_id").to_pylist() == ["before"] * 2 + ids + ["after"] * 3
    assert logged[0].column("row_id").to_pylist()[:3] == ["b-0", "b-1", None]


def test_a_batch_entry_is_sampled_by_row_and_keeps_what_fits_past_capacity() -> None:
    x = valid_rows(400, seed=4)
    scores = np.linspace(0, 1, 400, dtype=np.float32)
    decisions = (scores >= 0.5).astype(np.int8)
    ids = [f"q-{i}" for i in range(400)]
    # Given a logger keeping a quarter of the rows
    tables: list[Any] = []
    log = logger(sink=lambda t, day: tables.append(t), sample_rate=0.25, flush_interval_s=60)
    log.submit_rows(ids, x, scores, decisions)
    log.start()
    assert log.close(10)
    # Then about a quarter of the rows is written, each with its own id and score
    kept = pa.concat_tables(tables)
    assert 50 < kept.num_rows < 150
    assert kept.num_rows + log.sampled_out_rows == 400
    for rid, score in zip(kept["request_id"].to_pylist(), kept["score"].to_pylist(), strict=True):
        assert score == float(scores[int(rid[2:])])
    # And a nearly full logger keeps the rows of a batch entry that fit and counts the rest
    full = logger(sink=lambda t, day: None, capacity_rows=300, flush_interval_s=60)
    full.submit_rows(ids[:200], x[:200], scores[:200], decisions[:200])
    full.submit_rows(ids[200:], x[200:], scores[200:], decisions[200:])
    assert full.held_rows == 300  # the rows that fit, as one-by-one submits would keep
    assert full.dropped_rows == 100
    # And arrays that do not describe the same rows are refused before anything is counted
    with pytest.raises(ValueError, match="do not describe the same rows"):
        full.submit_rows(ids[:3], x[:2], scores[:2], decisions[:2])
    assert full.held_rows == 300
    assert full.dropped_rows == 100


@pytest.mark.parametrize("writer_running", [False, True])
def test_no_file_holds_more_than_batch_rows_and_every_row_is_written_once_in_order(
    writer_running: bool,
) -> None:
    # Given a logger of 7 rows a file, fed requests of many rows and batches of one-row requests
    # whose sizes cross the file boundary in every way (before start, or while the writer runs)
    rng = np.random.default_rng(11)
    tables: list[Any] = []
    log = logger(sink=lambda t, day: tables.append(t), batch_rows=7, flush_interval_s=0.005)
    if writer_running:
        log.start()
    expected: list[tuple[str, str | None]] = []
    for k in range(300):
        n = int(rng.integers(1, 20))
        x = valid_rows(n, seed=k)
        scores = np.full(n, k / 300, dtype=np.float32)
        decisions = np.zeros(n, dtype=np.int8)
        if k % 2:
            rows = [f"r{k}-{i}" for i in range(n)]
            log.submit(f"req{k}", rows, x, scores, decisions)
            expected += [(f"req{k}", r) for r in rows]
        else:
            ids = [f"one{k}-{i}" for i in range(n)]
            log.submit_rows(ids, x, scores, decisions)
            expected += [(i, None) for i in ids]
        if writer_running and k % 50 == 0:
            time.sleep(0.02)  # let the writer take part of the queue mid-stream
    if not writer_running:
        log.start()
    assert log.close(10)
    # Then every file holds at most 7 rows, and the files hold each row once, in order
    assert max(t.num_rows for t in tables) == 7
    got = pa.concat_tables(tables)
    pairs = zip(got["request_id"].to_pylist(), got["row_id"].to_pylist(), strict=True)
    assert list(pairs) == expected
    assert log.written_rows == len(expected)
    assert log.dropped_rows == log.failed_rows == 0


class _Body(bytearray):
    """A request body that can be watched: a weak reference says when nothing holds it."""


def test_queued_rows_do_not_keep_the_request_body_alive(tmp_path: Path) -> None:
    # Given a request whose matrix is a view of its 1 MiB body (binary tensor data, gRPC raw
    # contents: np.frombuffer), a logger that will not flush for a minute
    log = logger(root=str(tmp_path / "log"), flush_interval_s=60)
    x = valid_rows(1)
    body = _Body(b" " * (1 << 20) + x.astype("<f4").tobytes())
    view = np.frombuffer(body, dtype="<f4", offset=1 << 20).reshape(1, -1)
    watched = weakref.ref(body)
    scores = np.array([0.25], dtype=np.float32)
    # When its row is queued and the request is done with its body
    log.submit("r", None, view, scores, np.zeros(1, dtype=np.int8))
    del body, view
    # Then the queued row holds its own copy: the body is freed before the flush
    assert watched() is None
    log.start()
    assert log.close(10)
    table = ds.dataset(tmp_path / "log", format="parquet", partitioning="hive").to_table()
    assert [table[f][0].as_py() for f in FEATURES] == pytest.approx(x[0].tolist())
