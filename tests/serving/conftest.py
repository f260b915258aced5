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
CATEGORICAL = {"f00": ["web", "pos", "atm", "moto"], "f01": ["a", "b", "c"], "f02": list("vwxyz")}
ALLOW_NAN = {"f03", "f04", "f05", "f01"}
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]
THRESHOLD = 0.5
MODEL_VERSION = "7"


def _train(out: Path, seed: int = 0) -> Path:
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(seed)
    n = 2000
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    for name, cats in CATEGORICAL.items():
        x[:, FEATURES.index(name)] = rng.integers(0, len(cats), size=n)
    for name in ALLOW_NAN:
        col = FEATURES.index(name)
        x[rng.random(n) < 0.1, col] = np.nan
    logit = 1.5 * np.nan_to_num(x[:, 6]) - np.nan_to_num(x[:, 7]) + (x[:, 0] == 2) - 1.0
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
        "name": "fraud-detector",
        "version": MODEL_VERSION,
        "features": FEATURES,
        "feature_specs": [
            {"name": f, "allow_nan": f in ALLOW_NAN, "categories": CATEGORICAL.get(f)}
            for f in FEATURES
        ],
        "input_name": "features",
        "threshold": THRESHOLD,
        "sha256": hashlib.sha256(data).hexdigest(),
        "mlflow_run_id": "0123456789abcdef",
        "an_unknown_key": {"ignored": True},
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory following the contract (read-only for tests: copy before mutating)."""
    return _train(tmp_path_factory.mktemp("model") / "fraud-detector")


def valid_rows(n: int, seed: int = 1) -> np.ndarray:
    """Rows that satisfy the feature contract (categorical codes in range, no NaN)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    for name, cats in CATEGORICAL.items():
        x[:, FEATURES.index(name)] = rng.integers(0, len(cats), size=n)
    return x


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


def start_in_process(app: Any) -> InProcess:
    from argosy.serving.server import ModelServer, new_event_loop

    server = ModelServer(app, "127.0.0.1", 0, grace_s=5.0)
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


def make_app(model_dir: Path, predlog: Any = None, **limits: Any) -> Any:
    from argosy.serving.metrics import Metrics
    from argosy.serving.model import load_model
    from argosy.serving.server import App, Limits

    model = load_model(model_dir)
    return App(model, Metrics(model.name, model.version, model.sha256), Limits(**limits), predlog)


@pytest.fixture
def server(model_dir: Path) -> Iterator[InProcess]:
    """An in-process server on the fixture model, max batch 100, 64 KiB bodies."""
    srv = start_in_process(make_app(model_dir, max_batch=100, max_body_bytes=64 * 1024))
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

    With ``use_source_tree`` the child imports this checkout's ``src/``; without it, whatever
    ``python`` has installed (the fresh-virtualenv test).
    """
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
            return Subprocess(proc, port, log_path)
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
