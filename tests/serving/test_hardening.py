"""Bounded attacks against the real server on 127.0.0.1.

The server is a subprocess, or in-process where a test shrinks a limit (idle timeout, connection
cap) to stay short.

Each test asserts the status of the attack, that the server stays ready and scores correctly
afterwards, that the rows of the good requests around it reach the prediction log, and, where the
attack is about memory, that the server's peak RSS stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from .conftest import (
    Client,
    Subprocess,
    id_tensor,
    infer_body,
    make_app,
    named_body,
    spawn_server,
    start_in_process,
    stop_in_process,
    valid_rows,
)
from .test_v2_conformance import reference_scores

INFER = "/v2/models/example-model/infer"
HEAD_LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def attacked(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Subprocess, Path]]:
    """One server for the module, logging predictions with a short flush interval."""
    tmp = tmp_path_factory.mktemp("attacked")
    log_dir = tmp / "predictions"
    srv = spawn_server(
        model_dir, tmp, "--prediction-log", str(log_dir), "--log-flush-seconds", "0.1"
    )
    try:
        yield srv, log_dir
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait(10)


def peak_rss_mb(srv: Subprocess) -> float:
    """The server's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def logged_row_ids(log_dir: Path) -> list[str | None]:
    """Every row id written so far (finished files only: temporary names start with '.')."""
    ids: list[str | None] = []
    for path in log_dir.rglob("part-*.parquet"):
        ids += pq.read_table(path, columns=["row_id"]).column("row_id").to_pylist()
    return ids


def good_request(client: Client, model_dir: Path, row_id: str) -> None:
    """A valid two-row request that must be answered 200 with ONNX Runtime's scores."""
    x = valid_rows(2, seed=len(row_id))
    body = infer_body(x)
    body["inputs"].append(id_tensor([f"{row_id}-0", f"{row_id}-1"]))
    status, _, data = client.request("POST", INFER, body)
    assert status == 200, data
    got = json.loads(data)["outputs"][0]["data"]
    np.testing.assert_allclose(got, reference_scores(model_dir, x), rtol=1e-6)


def assert_still_serving(srv: Subprocess, log_dir: Path, model_dir: Path, tag: str) -> None:
    """Ready, scoring correctly, and the good rows sent around the attack are in the log."""
    client = srv.client()
    try:
        assert client.request("GET", "/v2/health/ready")[0] == 200
        good_request(client, model_dir, f"{tag}-after")
    finally:
        client.close()
    wanted = {f"{tag}-{when}-{i}" for when in ("before", "after") for i in (0, 1)}
    deadline = time.monotonic() + 10
    while not wanted <= set(logged_row_ids(log_dir)):
        assert time.monotonic() < deadline, f"rows of {sorted(wanted)} never reached the log"
        time.sleep(0.05)


def post_raw(srv: Subprocess, raw: bytes) -> tuple[int, dict[str, Any]]:
    client = srv.client()
    try:
        status, _, data = client.request("POST", INFER, raw=raw)
    finally:
        client.close()
    return status, json.loads(data)


def with_value(body: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    """``body`` with the first value of input ``name`` replaced."""
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            tensor["data"][0] = value
    return body


MARK = "\u2603MARK\u2603"  # replaced in the encoded body by raw, invalid bytes


def bad_string_bodies() -> list[tuple[str, bytes]]:
    x = valid_rows(1)
    ids = id_tensor(["ok"])
    cases = []
    for where in ("id tensor", "request id", "BYTES category"):
        for kind, text, raw in (
            ("lone high surrogate escape", "\ud800", None),
            ("lone low surrogate escape", "\udc00", None),
            ("invalid UTF-8 byte", MARK, b"\xff"),
            ("UTF-8-encoded surrogate", MARK, b"\xed\xa0\x80"),
        ):
            body = named_body(x)  # f02 maps unseen categories to `other`: a lone one would pass
            body["inputs"].append(dict(ids, data=["ok"]))
            if where == "id tensor":
                with_value(body, "row-key", text)
            elif where == "request id":
                body["id"] = text
            else:
                with_value(body, "f02", text)
            encoded = json.dumps(body).encode()
            if raw is not None:
                encoded = encoded.replace(json.dumps(MARK).encode()[1:-1], raw)
            cases.append((f"{kind} in the {where}", encoded))
    # The stdlib slow path (a NaN token) must be just as strict
    body = infer_body(valid_rows(1))
    body["inputs"][0]["data"][3] = float("nan")  # f03 is nullable: NaN is a legal value
    body["inputs"].append(id_tensor(["\ud800"]))
    cases.append(("lone surrogate next to a NaN token", json.dumps(body).encode()))
    return cases


@pytest.mark.parametrize(
    ("name", "raw"), bad_string_bodies(), ids=[c[0] for c in bad_string_bodies()]
)
def test_invalid_strings_are_400_and_never_cost_other_rows(
    attacked: tuple[Subprocess, Path], model_dir: Path, name: str, raw: bytes
) -> None:
    srv, log_dir = attacked
    tag = name.replace(" ", "_")
    # Given a good request logged before the attack
    client = srv.client()
    good_request(client, model_dir, f"{tag}-before")
    client.close()
    # When a body with an invalid string is posted
    status, doc = post_raw(srv, raw)
    # Then it is a 400 naming the problem, not a 200 whose rows the log cannot write, nor a 500
    assert status == 400, doc
    assert "JSON" in doc["error"]
    # And the server still serves, and the good rows around it are logged
    assert_still_serving(srv, log_dir, model_dir, tag)


def test_a_valid_surrogate_pair_is_served_and_logged(
    attacked: tuple[Subprocess, Path], model_dir: Path
) -> None:
    srv, log_dir = attacked
    # Given a row id with a character outside the BMP, sent as a JSON surrogate-pair escape
    body = infer_body(valid_rows(1))
    body["inputs"].append(id_tensor(["pair-\U0001f600"]))
    raw = json.dumps(body).encode()
    assert b"\\ud83d\\ude00" in raw
    # When it is posted / Then it is answered and the id reaches the log intact
    assert post_raw(srv, raw)[0] == 200
    deadline = time.monotonic() + 10
    while "pair-\U0001f600" not in logged_row_ids(log_dir):
        assert time.monotonic() < deadline, "the row never reached the log"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("field", "needle"), [("id", "'id' is longer than 128 bytes"), ("row-key", "'row-key'")]
)
def test_ids_are_capped_and_a_huge_id_costs_no_memory(
    attacked: tuple[Subprocess, Path], model_dir: Path, field: str, needle: str
) -> None:
    srv, log_dir = attacked
    client = srv.client()
    good_request(client, model_dir, f"cap-{field}-before")
    client.close()
    base = peak_rss_mb(srv)
    # Given 1,000 rows with a 1 MB id (the request id, or one row's id)
    n = 1000
    body = infer_body(valid_rows(n))
    ids = [f"r{i}" for i in range(n)]
    if field == "id":
        body["id"] = "i" * 1_000_000
    else:
        ids[n // 2] = "t" * 1_000_000
    body["inputs"].append(id_tensor(ids))
    # When it is posted
    status, doc = post_raw(srv, json.dumps(body).encode())
    # Then it is a 400 naming the field, and the server's peak memory barely moved
    assert status == 400
    assert needle in doc["error"]
    assert peak_rss_mb(srv) - base < 80, (base, peak_rss_mb(srv))
    assert_still_serving(srv, log_dir, model_dir, f"cap-{field}")


async def _flood_grpc(
    port: int, method: str, message: bytes, channels: int, streams: int, calls: int
) -> Counter:
    """``channels`` connections, each with ``streams`` RPCs at once, ``calls`` in turn each."""
    import grpc

    codes: Counter = Counter()
    own = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 8 << 20)]
    opened = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=own) for _ in range(channels)]

    async def send(channel: Any) -> None:
        call = channel.unary_unary(method)
        for _ in range(calls):
            try:
                await call(message, timeout=60)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1

    try:
        await asyncio.gather(*(send(c) for c in opened for _ in range(streams)))
    finally:
        for channel in opened:
            await channel.close()
    return codes


@pytest.mark.parametrize(
    ("method", "refused", "most_mb"),
    [
        (
            "/inference.GRPCInferenceService/ModelInfer",
            {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"},
            800,  # 31 read at once: 490 to 580 MB more was measured, 2.6 GB before that bound
        ),
        (  # past the probes' 64 KiB
            "/grpc.health.v1.Health/Check",
            {"RESOURCE_EXHAUSTED"},
            650,  # 15 read at once: 300 to 410 MB more was measured, 1,070 MB with 256
        ),
    ],
    ids=["infer", "health"],
)
def test_many_grpc_streams_of_large_messages_cost_bounded_memory(
    model_dir: Path,
    tmp_path: Path,
    spawned: list[Subprocess],
    method: str,
    refused: set[str],
    most_mb: float,
) -> None:
    log_dir = tmp_path / "predictions"
    srv = spawn_server(
        model_dir, tmp_path, "--prediction-log", str(log_dir), "--log-flush-seconds", "0.1"
    )
    spawned.append(srv)
    assert srv.grpc_port is not None
    tag = f"grpc-flood-{method.rsplit('/', 1)[1]}"
    client = srv.client()
    good_request(client, model_dir, f"{tag}-before")
    client.close()
    base = peak_rss_mb(srv)
    # Given 256 RPCs at once (16 connections of 16 streams), each a 4 MB message (for infer, a
    # raw tensor far larger than its shape), sent 3 times over
    from argosy.serving.proto import grpc_predict_v2_pb2 as pb

    req = pb.ModelInferRequest(model_name=model_dir.name)
    req.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    req.raw_input_contents.append(b"\0" * (4 * 1024 * 1024 - 1024))
    # When they are sent
    codes = asyncio.run(_flood_grpc(srv.grpc_port, method, req.SerializeToString(), 16, 16, 3))
    # Then each is refused, as invalid, too large or (waiting past the limit) as too many
    assert sum(codes.values()) == 16 * 16 * 3
    assert set(codes) <= refused, codes
    # and the server held a bounded number of messages at once (1 GB of them were in flight)
    assert peak_rss_mb(srv) - base < most_mb, (base, peak_rss_mb(srv))
    assert_still_serving(srv, log_dir, model_dir, tag)


@pytest.mark.parametrize("field", ["id", "row-key"])
def test_ids_at_the_cap_are_served_and_logged(
    attacked: tuple[Subprocess, Path], field: str
) -> None:
    srv, log_dir = attacked
    # Given ids of exactly 128 bytes in UTF-8 (64 two-byte characters)
    at_cap = "\u00e9" * 64
    body = infer_body(valid_rows(3))
    row_ids = [f"at-cap-{field}-{i}" for i in range(3)]
    if field == "id":
        body["id"] = at_cap
    else:
        row_ids[0] = at_cap
    body["inputs"].append(id_tensor(list(row_ids)))
    # When posted / Then served, and the rows are logged
    status, doc = post_raw(srv, json.dumps(body).encode())
    assert status == 200, doc
    # And one byte more is refused
    if field == "id":
        body["id"] = at_cap + "x"
    else:
        body["inputs"][-1]["data"][0] = at_cap + "x"
    assert post_raw(srv, json.dumps(body).encode())[0] == 400
    deadline = time.monotonic() + 10
    while not set(row_ids) <= set(logged_row_ids(log_dir)):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def stream(
    port: int, start: bytes, filler: bytes, most: int = 4 * 1024 * 1024
) -> tuple[bytes, int]:
    """Send ``start`` then ``filler`` until the server answers; return the reply and bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    try:
        sock.sendall(start)
        sent = len(start)
        while sent < most and not select.select([sock], [], [], 0.02)[0]:
            try:
                sock.sendall(filler)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(filler)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
        return reply, sent
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("what", "start", "filler", "status"),
    [
        ("long URL", b"GET /v2/", b"a" * 4096, b"414"),
        ("long header", b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: ", b"b" * 4096, b"431"),
        ("many headers", b"GET /v2 HTTP/1.1\r\nHost: x\r\n", b"X-A: 1234567890\r\n" * 256, b"431"),
    ],
)
def test_oversize_request_head_is_refused_as_it_arrives(
    attacked: tuple[Subprocess, Path],
    model_dir: Path,
    what: str,
    start: bytes,
    filler: bytes,
    status: bytes,
) -> None:
    srv, log_dir = attacked
    tag = "head-" + what.replace(" ", "_")
    client = srv.client()
    good_request(client, model_dir, f"{tag}-before")
    client.close()
    base = peak_rss_mb(srv)
    # When a request head grows past 16 KB, sent a few KB at a time without end
    reply, sent = stream(srv.port, start, filler)
    # Then the server answers 414/431 after little more than the limit, and closes
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:200]
    assert b"connection: close" in reply
    assert sent < 1024 * 1024, sent  # the attacks this guards against sent 135-144 MB
    assert peak_rss_mb(srv) - base < 50
    assert_still_serving(srv, log_dir, model_dir, tag)


def test_oversize_head_in_one_piece_is_refused(attacked: tuple[Subprocess, Path]) -> None:
    srv, _ = attacked
    # Given a complete request whose headers (40 KB) arrive in a single write
    head = b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + b"X-A: %s\r\n" % (b"c" * 40_000) + b"\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(head)
        # Then it is a 431
        assert sock.recv(65536).startswith(b"HTTP/1.1 431 ")


def test_heads_under_the_limit_and_pipelined_bodies_are_served(
    attacked: tuple[Subprocess, Path],
) -> None:
    srv, _ = attacked
    # Given three pipelined requests: two POSTs with 50 KB bodies, then a GET
    # whose head carries 12 KB of headers (each head under the limit, the bytes around it far over)
    body = json.dumps(infer_body(valid_rows(100))).encode()
    assert len(body) > 2 * HEAD_LIMIT
    post = (
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (INFER.encode(), len(body), body)
    )
    get = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % (b"p" * 12_000)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        # (the GET's head split across two writes: it begins in the chunk after the bodies)
        sock.sendall(post + post + get[:6000])
        time.sleep(0.05)
        sock.sendall(get[6000:])
        # When the answers are read
        reply = b""
        deadline = time.monotonic() + 10
        while reply.count(b"HTTP/1.1 ") < 3 and time.monotonic() < deadline:
            reply += sock.recv(1 << 20)
    # Then all three are 200
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", reply) == [b"200"] * 3, reply[-300:]


def test_log_directory_orphans_are_removed_at_start(
    model_dir: Path, tmp_path: Path, spawned: list[Subprocess]
) -> None:
    # Given a log directory where a killed server left an unfinished file, next to other files
    day = tmp_path / "predictions" / "date=2024-01-02"
    day.mkdir(parents=True)
    orphan = day / ".part-20240102T030405123456Z-0123456789abcdef0123456789abcdef.parquet.tmp"
    orphan.write_bytes(b"")
    kept = [day / "notes.tmp", day / ".other.parquet.tmp", day / "part-x.parquet"]
    for path in kept:
        path.write_bytes(b"keep")
    # When a server starts on it
    srv = spawn_server(model_dir, tmp_path, "--prediction-log", str(tmp_path / "predictions"))
    spawned.append(srv)
    # Then the orphan is removed (the writer opens the directory at start), which the log says
    # (just after the removal: both are waited for), and nothing else is
    deadline = time.monotonic() + 20
    while orphan.exists() or "removed 1 unfinished file" not in srv.log():
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.05)
    assert all(path.read_bytes() == b"keep" for path in kept)
    assert srv.terminate() == 0


def test_bytes_between_requests_do_not_hold_an_idle_connection_open(model_dir: Path) -> None:
    # Given a server closing keep-alive connections idle for 1 s (its sweeper looks every 1 s)
    srv = start_in_process(make_app(model_dir, keepalive_timeout_s=1.0))
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            # When the client then sends a bare CRLF every 0.2 s, which begins no request
            t0 = time.monotonic()
            closed = False
            while not closed and time.monotonic() - t0 < 6:
                try:
                    sock.sendall(b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if select.select([sock], [], [], 0.2)[0]:
                    try:
                        closed = sock.recv(1) == b""
                    except ConnectionResetError:
                        closed = True
            # Then the connection is closed by the idle timeout all the same
            assert closed, "the CRLFs kept the connection open"
            assert time.monotonic() - t0 < 3.5
        # And the server still serves
        client = srv.client()
        assert client.request("GET", "/v2/health/ready")[0] == 200
        client.close()
    finally:
        stop_in_process(srv)


def test_connections_over_the_cap_get_503_and_the_server_keeps_serving(model_dir: Path) -> None:
    # Given a server capped at 3 connections, all held open by idle clients
    srv = start_in_process(make_app(model_dir, max_connections=3))
    held = [srv.client() for _ in range(3)]
    try:
        for client in held:
            assert client.request("GET", "/v2/health/live")[0] == 200
        # When a fourth connects (and reads before it writes: the answer comes at once, and a
        # request the server never reads could turn its close into a reset)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        # Then it gets a 503 naming the limit, and is closed
        assert reply.startswith(b"HTTP/1.1 503 "), reply[:200]
        assert b"too many open connections (limit 3)" in reply
        # And the held connections still serve; once one closes, a new one is accepted
        assert held[0].request("POST", INFER, infer_body(valid_rows(1)))[0] == 200
        held.pop().close()
        deadline = time.monotonic() + 5
        while len(srv.server.connections) >= 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        fresh = srv.client()
        held.append(fresh)
        assert fresh.request("GET", "/v2/health/ready")[0] == 200
        metrics = fresh.request("GET", "/metrics")[2].decode()
        assert 'argosy_requests_total{endpoint="http",code="503",protocol="rest"} 1' in metrics
    finally:
        for client in held:
            client.close()
        stop_in_process(srv)
