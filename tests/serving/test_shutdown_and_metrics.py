"""SIGTERM drains in-flight requests and flushes the log; /metrics exposes every family."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from .conftest import Client, Subprocess, id_tensor, infer_body, spawn_server, valid_rows

INFER = "/v2/models/example-model/infer"


def with_ids(n: int, ids: list[str]) -> dict:
    body = infer_body(valid_rows(n))
    body["inputs"].append(id_tensor(ids))
    return body


def test_sigterm_drains_in_flight_request_and_flushes_log(
    model_dir: Path, tmp_path: Path, spawned: list[Subprocess]
) -> None:
    # Given a server logging predictions with a flush interval far longer than the test
    log_dir = tmp_path / "predictions"
    srv = spawn_server(
        model_dir, tmp_path, "--prediction-log", str(log_dir), "--log-flush-seconds", "600"
    )
    spawned.append(srv)
    c = srv.client()
    for i in range(10):
        assert c.request("POST", INFER, with_ids(2, [f"a{i}", f"b{i}"]))[0] == 200
    idle = Client(srv.port)
    assert idle.request("GET", "/v2/health/live")[0] == 200  # an idle keep-alive connection
    # And a request that is half sent when SIGTERM arrives
    raw = json.dumps(with_ids(1, ["in-flight"])).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    head = (
        b"POST /v2/models/example-model/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(raw)
    )
    sock.sendall(head + raw[:50])
    time.sleep(0.2)
    assert not list(log_dir.rglob("*.parquet"))  # nothing flushed yet
    # When the server gets SIGTERM
    srv.proc.send_signal(15)
    time.sleep(0.3)
    # Then it stops accepting new connections
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    # And the in-flight request is completed and answered, with the connection closed after it
    sock.sendall(raw[50:])
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:200]
    assert b"connection: close" in reply.lower()
    # And the process exits 0 after flushing every logged row
    assert srv.proc.wait(30) == 0
    table = ds.dataset(log_dir, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 21
    assert "in-flight" in table.column("row_id").to_pylist()
    assert "flushed: 21 rows written, 0 dropped" in srv.log()


def test_sigterm_on_idle_server_exits_promptly(
    model_dir: Path, tmp_path: Path, spawned: list[Subprocess]
) -> None:
    srv = spawn_server(model_dir, tmp_path)
    spawned.append(srv)
    c = srv.client()
    assert c.request("GET", "/v2/health/ready")[0] == 200
    t0 = time.monotonic()
    assert srv.terminate(timeout=20) == 0
    assert time.monotonic() - t0 < 5


def test_metrics_expose_requests_latency_batches_scores_and_model_info(client: Client) -> None:
    # Given a mix of good and bad requests
    client.request("POST", INFER, infer_body(valid_rows(1)))
    client.request("POST", INFER, infer_body(valid_rows(10)))
    client.request("POST", INFER, raw=b"{}")
    # When /metrics is scraped
    status, headers, data = client.request("GET", "/metrics")
    text = data.decode()
    # Then it is Prometheus text with each family the operator dashboards need
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'argosy_requests_total{endpoint="infer",code="200",protocol="rest"} 2' in text
    assert 'argosy_requests_total{endpoint="infer",code="400",protocol="rest"} 1' in text
    assert 'argosy_request_errors_total{endpoint="infer",code="400",protocol="rest"} 1' in text
    assert (
        'argosy_request_duration_seconds_bucket{endpoint="infer",protocol="rest",le="+Inf"} 3'
        in text
    )
    assert 'argosy_request_duration_seconds_count{endpoint="infer",protocol="rest"} 3' in text
    assert 'argosy_batch_size_bucket{le="1"} 1' in text
    assert 'argosy_batch_size_bucket{le="10"} 2' in text
    assert "argosy_batch_size_sum 11" in text
    assert 'argosy_prediction_score_bucket{le="+Inf"} 11' in text
    assert "argosy_prediction_score_count 11" in text
    assert 'argosy_model_info{name="example-model",version="7",sha256="' in text
    assert "argosy_model_ready 1" in text
    # and every sample line parses as "name{labels} value"
    for line in text.splitlines():
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1].replace("+Inf", "inf"))
