"""An unreachable tracking server fails in seconds, with one message naming the URI."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from argosy import tracking

REPO = Path(__file__).resolve().parents[2]
ARGOSY = Path(sys.executable).parent / "argosy"
FAIL_FAST_S = 15.0


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound (so nobody else takes it) but refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _serve(status: int) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def healthy_server() -> Iterator[str]:
    yield from _serve(200)


@pytest.fixture
def auth_server() -> Iterator[str]:
    yield from _serve(401)


def test_closed_port_fails_at_once_naming_the_uri(closed_port: int) -> None:
    # Given a tracking URI at a port where nothing listens
    uri = f"http://127.0.0.1:{closed_port}"
    started = time.monotonic()
    # When it is connected to
    with pytest.raises(tracking.TrackingServerError) as err:
        tracking.connect(uri, environ={})
    # Then it fails within the probe's timeout, naming the URI and what to check
    assert time.monotonic() - started < tracking.PROBE_TIMEOUT_S
    message = str(err.value)
    assert uri in message
    assert "refused" in message
    assert "MLFLOW_TRACKING_URI" in message


def test_server_that_never_answers_fails_after_the_timeout(silent_port: int) -> None:
    # Given a server that accepts the connection but sends nothing
    uri = f"http://127.0.0.1:{silent_port}"
    started = time.monotonic()
    # When it is connected to with a half-second timeout
    with pytest.raises(tracking.TrackingServerError) as err:
        tracking.connect(uri, timeout_s=0.5, environ={})
    # Then it gives up after about that long and says so
    assert time.monotonic() - started < 5
    assert "no answer within 0.5 s" in str(err.value)


@pytest.mark.parametrize("server", ["healthy_server", "auth_server"])
def test_any_http_answer_counts_as_reachable(server: str, request: pytest.FixtureRequest) -> None:
    # Given a server that answers /health, with 200 or with 401 (behind authentication)
    uri = request.getfixturevalue(server)
    env: dict[str, str] = {}
    # When it is connected to
    result = tracking.connect(uri, environ=env)
    # Then the URI comes back and MLflow's retries and timeout are lowered
    assert result == uri
    assert env == tracking.HTTP_DEFAULTS
    assert int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 3


def test_user_settings_for_retries_and_timeout_are_kept(healthy_server: str) -> None:
    # Given a user who chose MLflow's retries and timeout
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "9", "MLFLOW_HTTP_REQUEST_TIMEOUT": "300"}
    # When the server is connected to
    tracking.connect(healthy_server, environ=env)
    # Then the user's values stand
    assert env == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "9", "MLFLOW_HTTP_REQUEST_TIMEOUT": "300"}


def test_credentials_stay_out_of_the_message(closed_port: int) -> None:
    # Given a URI that carries a user name and password
    uri = f"http://alice:s3cret@127.0.0.1:{closed_port}"
    # When the server cannot be reached
    with pytest.raises(tracking.TrackingServerError) as err:
        tracking.connect(uri, environ={})
    # Then the message names the server without the password
    assert f"http://127.0.0.1:{closed_port}" in str(err.value)
    assert "s3cret" not in str(err.value)


@pytest.mark.parametrize("uri", ["sqlite:///tmp/mlflow.db", "file:///tmp/mlruns", "databricks"])
def test_non_http_uris_pass_untouched(uri: str) -> None:
    # Given a tracking URI that is not an HTTP server
    env: dict[str, str] = {}
    # When it is connected to
    # Then it comes back as it is, and MLflow's HTTP settings are left alone
    assert tracking.connect(uri, environ=env) == uri
    assert env == {}


@pytest.mark.parametrize("command", ["train", "register"])
def test_cli_fails_fast_on_a_closed_port(tmp_path: Path, closed_port: int, command: str) -> None:
    # Given MLFLOW_TRACKING_URI at a closed port, and none of MLflow's HTTP settings
    uri = f"http://127.0.0.1:{closed_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}
    env["MLFLOW_TRACKING_URI"] = uri
    models = tmp_path / "models"
    args = {
        "train": [
            "--prepared",
            str(tmp_path / "prepared"),
            "--model",
            str(models),
            "--params",
            str(REPO / "params.yaml"),
            "--contract",
            str(REPO / "contract.yaml"),
        ],
        "register": ["--gate", str(tmp_path / "gate.json")],
    }[command]
    started = time.monotonic()
    # When the command runs
    result = subprocess.run(
        [str(ARGOSY), command, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    # Then it fails within seconds, with one message naming the URI, no traceback and no model
    assert result.returncode != 0
    assert elapsed < FAIL_FAST_S
    assert f"cannot reach the MLflow tracking server at {uri}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not models.exists()
