"""Fixtures for the serving tests.

A small model directory that follows the train-stage contract, servers in-process (fast,
injectable) and as subprocesses (signals, integrity, cold start).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

N_FEATURES = 30
MODEL_NAME = "example-model"
ID_COLUMN = "row-key"  # a hyphen, as real id columns may have: never a Python identifier
# f00 rejects unseen values, f01 is nullable, f02 maps unseen values to its `other` code (5).
CATEGORICAL = {"f00": ["web", "pos", "atm", "moto"], "f01": ["a", "b", "c"], "f02": list("vwxyz")}
UNSEEN_OTHER = {"f02"}
BOOLEAN = {"f08", "f12"}
NULLABLE = {"f03", "f04", "f05", "f01", "f12"}
HYPHENATED = "f09-score"
FEATURES = [HYPHENATED if i == 9 else f"f{i:02d}" for i in range(N_FEATURES)]
THRESHOLD = 0.5
MODEL_VERSION = "7"


def feature_specs() -> list[dict[str, Any]]:
    """The fixture's ``feature_specs``, in the form train writes (``FeatureSpec.to_dict``)."""
    specs = []
    for f in FEATURES:
        kind = "categorical" if f in CATEGORICAL else "boolean" if f in BOOLEAN else "numeric"
        specs.append(
            {
                "name": f,
                "type": kind,
                "nullable": f in NULLABLE,
                "minimum": -100.0 if kind == "numeric" else None,
                "maximum": 100.0 if kind == "numeric" else None,
                "categories": CATEGORICAL.get(f),
                "unseen": "other" if f in UNSEEN_OTHER else "reject",
            }
        )
    return specs


def code_count(name: str) -> int:
    """How many codes the training data uses for a categorical feature (``other`` included)."""
    return len(CATEGORICAL[name]) + (name in UNSEEN_OTHER)


def _train(out: Path, seed: int = 0) -> Path:
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(seed)
    n = 2000
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    for name in CATEGORICAL:
        x[:, FEATURES.index(name)] = rng.integers(0, code_count(name), size=n)
    for name in BOOLEAN:
        x[:, FEATURES.index(name)] = rng.integers(0, 2, size=n)
    for name in NULLABLE:
        col = FEATURES.index(name)
        x[rng.random(n) < 0.1, col] = np.nan
    logit = (
        1.5 * np.nan_to_num(x[:, 6])
        - np.nan_to_num(x[:, 7])
        + (x[:, 0] == 2)
        + 1.5 * (x[:, 2] == 5)  # the `other` code of f02 gets a score of its own
        - (x[:, 1] == 1)
        + 0.8 * x[:, 8]
        - 1.0
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    clf = xgb.XGBClassifier(n_estimators=20, max_depth=3, learning_rate=0.3, random_state=seed)
    clf.fit(x, y)
    onx = onnxmltools.convert_xgboost(
        clf, initial_types=[("features", FloatTensorType([None, N_FEATURES]))]
    )
    out.mkdir(parents=True, exist_ok=True)
    data = onx.SerializeToString()
    (out / "model.onnx").write_bytes(data)
    metadata = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "features": FEATURES,
        "feature_specs": feature_specs(),
        "id_column": ID_COLUMN,
        "input_name": "features",
        "output_name": "probabilities",
        "threshold": THRESHOLD,
        "sha256": hashlib.sha256(data).hexdigest(),
        "an_unknown_key": {"ignored": True},
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory following the contract (read-only for tests: copy before mutating)."""
    return _train(tmp_path_factory.mktemp("model") / MODEL_NAME)


def valid_rows(n: int, seed: int = 1) -> np.ndarray:
    """Rows that satisfy the feature contract (declared category codes, 0/1 booleans, no NaN)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    for name, cats in CATEGORICAL.items():
        x[:, FEATURES.index(name)] = rng.integers(0, len(cats), size=n)
    for name in BOOLEAN:
        x[:, FEATURES.index(name)] = rng.integers(0, 2, size=n)
    return x


def id_tensor(ids: list[str]) -> dict[str, Any]:
    """The optional row id tensor, named after the model's id column."""
    return {"name": ID_COLUMN, "datatype": "BYTES", "shape": [len(ids)], "data": ids}


def raw_value(name: str, code: float) -> Any:
    """The raw value a client holds for one encoded value (categories by name, booleans)."""
    if np.isnan(code):
        return None
    if name in CATEGORICAL:
        cats = CATEGORICAL[name]
        return cats[int(code)] if code < len(cats) else "never-seen"
    if name in BOOLEAN:
        return bool(code)
    return float(code)


def named_body(x: np.ndarray, raw: bool = True, ids: list[str] | None = None) -> dict[str, Any]:
    """A V2 request with one tensor per feature.

    With ``raw``, categorical features go as BYTES category strings and booleans as BOOL (what a
    client has); without it every feature goes as FP32 codes.
    """
    inputs = []
    for j, name in enumerate(FEATURES):
        col = x[:, j]
        if raw and (name in CATEGORICAL or name in BOOLEAN):
            datatype = "BYTES" if name in CATEGORICAL else "BOOL"
            data = [raw_value(name, v) for v in col]
        else:
            datatype = "FP32"
            data = [None if np.isnan(v) else float(v) for v in col]
        inputs.append({"name": name, "datatype": datatype, "shape": [len(col)], "data": data})
    if ids is not None:
        inputs.append(id_tensor(ids))
    return {"inputs": inputs}


def infer_body(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    """A V2 request with one ``features`` tensor."""
    data = [None if np.isnan(v) else float(v) for v in x.reshape(-1)]
    return {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": list(x.shape), "data": data}],
        **extra,
    }


class Client:
    """A keep-alive HTTP client for one server."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return status, lower-cased headers and body."""
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"content-type": "application/json"} if payload is not None else {}
        try:
            self.conn.request(method, path, body=payload, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (ConnectionError, http.client.HTTPException):
            self.conn.close()
            raise
        if resp.getheader("connection", "").lower() == "close":
            self.conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one request; return status and the decoded JSON body."""
        status, _, data = self.request(method, path, body)
        return status, json.loads(data)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


@dataclass
class InProcess:
    """A server running on its own event loop in a thread of the test process."""

    app: Any
    server: Any
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    def client(self) -> Client:
        """A new keep-alive client."""
        return Client(self.port)


def start_in_process(app: Any, grpc: bool = False) -> InProcess:
    """Serve ``app`` on free ports in a thread; with ``grpc``, gRPC too (``server.grpc_port``)."""
    from argosy.serving.server import ModelServer, new_event_loop

    server = ModelServer(app, "127.0.0.1", 0, grace_s=5.0, grpc_port=0 if grpc else None)
    started = threading.Event()

    def run() -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_until_complete(server.run_until_stopped())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "in-process server did not start"
    return InProcess(app, server, thread)


def stop_in_process(srv: InProcess) -> None:
    srv.server.request_stop()
    srv.thread.join(10)
    assert not srv.thread.is_alive(), "in-process server did not stop"


def make_app(model_dir: Path, predlog: Any = None, batching: Any = None, **limits: Any) -> Any:
    """An app on the fixture model; ``batching`` is a ``Batching`` (None: every request alone)."""
    from argosy.serving.metrics import Metrics
    from argosy.serving.model import load_model
    from argosy.serving.server import App, Limits

    model = load_model(model_dir)
    metrics = Metrics(model.name, model.version, model.sha256)
    return App(model, metrics, Limits(**limits), predlog, batching)


@pytest.fixture
def server_batching() -> Any:
    """The ``server`` fixture's batching: on, as in production (a module may parametrize it)."""
    from argosy.serving.server import Batching

    return Batching()


@pytest.fixture
def server(model_dir: Path, server_batching: Any) -> Iterator[InProcess]:
    """An in-process server on the fixture model, max batch 100, 64 KiB bodies."""
    app = make_app(model_dir, batching=server_batching, max_batch=100, max_body_bytes=64 * 1024)
    srv = start_in_process(app)
    yield srv
    stop_in_process(srv)


@pytest.fixture
def client(server: InProcess) -> Iterator[Client]:
    c = server.client()
    yield c
    c.close()


@dataclass
class Subprocess:
    """``python -m argosy.serving`` in a child process."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    grpc_port: int | None = None

    def log(self) -> str:
        """The server's log so far."""
        return self.log_path.read_text()

    def client(self) -> Client:
        """A new keep-alive client."""
        return Client(self.port)

    def terminate(self, timeout: float = 30.0) -> int:
        """Send SIGTERM and return the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def spawn_server(
    model_dir: Path,
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    timeout: float = 30.0,
    use_source_tree: bool = True,
) -> Subprocess:
    """Start the server on a free port and wait until it listens (not until it is ready).

    gRPC listens on a free port too unless ``args`` name ``--grpc-port``. With
    ``use_source_tree`` the child imports this checkout's ``src/``; without it, whatever
    ``python`` has installed (the fresh-virtualenv test).
    """
    if "--grpc-port" not in args:
        args = ("--grpc-port", "0", *args)
    log_path = tmp_path / f"server-{time.monotonic_ns()}.log"
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTHONPATH", None)
    if use_source_tree:
        full_env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    with log_path.open("wb") as fh:
        proc = subprocess.Popen(
            [python, "-m", "argosy.serving", "--model-dir", str(model_dir), "--port", "0", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text()
        if "listening on http://127.0.0.1:" in text:
            port = int(text.split("listening on http://127.0.0.1:")[1].split()[0])
            grpc_port = None
            if "listening on grpc://127.0.0.1:" in text:
                grpc_port = int(text.split("listening on grpc://127.0.0.1:")[1].split()[0])
            return Subprocess(proc, port, log_path, grpc_port)
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{text}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"server did not listen within {timeout}s:\n{log_path.read_text()}")


@pytest.fixture
def spawned() -> Iterator[list[Subprocess]]:
    """Collects spawned servers and kills any a test left running."""
    procs: list[Subprocess] = []
    yield procs
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


# Raw HTTP/1.1 over a socket, for what http.client cannot send (pipelining, odd heads).
def raw_request(body: bytes) -> bytes:
    """An HTTP/1.1 infer request for the fixture model carrying ``body``."""
    return (
        b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (b"/v2/models/example-model/infer", len(body), body)
    )


def recv_some(sock: socket.socket) -> bytes:
    """The next bytes the server sent; a closed connection raises."""
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection before a whole response")
    return chunk


def read_response(sock: socket.socket, buffer: bytearray | None = None) -> tuple[int, Any]:
    """Read one response; bytes past it stay in ``buffer`` for the next call."""
    data = bytearray() if buffer is None else buffer
    while b"\r\n\r\n" not in data:
        data += recv_some(sock)
    end = data.index(b"\r\n\r\n")
    head = bytes(data[:end])
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(data) < end + 4 + length:
        data += recv_some(sock)
    body = bytes(data[end + 4 : end + 4 + length])
    del data[: end + 4 + length]
    return int(head.split()[1]), json.loads(body)
