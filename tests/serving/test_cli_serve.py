"""`argosy serve` (the Typer CLI) runs the same server as `python -m argosy.serving`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def test_argosy_serve_passes_options_through(model_dir: Path, tmp_path: Path) -> None:
    # Given the argosy script of this environment
    argosy = Path(sys.executable).parent / "argosy"
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                str(argosy),
                "serve",
                "--model-dir",
                str(model_dir),
                "--port",
                "0",
                "--grpc-port",
                "0",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        # When it starts / Then it listens on loopback and reports ready
        deadline = time.monotonic() + 60
        while "listening on http://127.0.0.1:" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        port = int(log.read_text().split("listening on http://127.0.0.1:")[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["extensions"] == ["binary_tensor_data"]
        # and gRPC listens on the port it picked, in the same process
        assert "listening on grpc://127.0.0.1:" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_argosy_serve_help_is_the_servers() -> None:
    argosy = Path(sys.executable).parent / "argosy"
    out = subprocess.run(
        [str(argosy), "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert "--model-sha256" in out.stdout
    assert "--prediction-log" in out.stdout
    # the connection cap is a documented setting with its default and environment variable
    assert "--max-connections" in out.stdout
    assert "ARGOSY_MAX_CONNECTIONS" in out.stdout


def test_grpc_can_be_turned_off_and_a_bad_port_is_refused(model_dir: Path, tmp_path: Path) -> None:
    from .conftest import spawn_server

    # Given the server started with --grpc-port off / Then it serves REST only
    srv = spawn_server(model_dir, tmp_path, "--grpc-port", "off")
    try:
        assert srv.grpc_port is None
        assert "grpc://" not in srv.log()
        status, _ = srv.client().json("GET", "/v2/health/ready")
        assert status == 200
    finally:
        assert srv.terminate() == 0
    # and a --grpc-port that is neither a number nor 'off' is a usage error that says so
    out = subprocess.run(
        [sys.executable, "-m", "argosy.serving", "--model-dir", str(model_dir),
         "--grpc-port", "nope"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "expected a port number or 'off'" in out.stderr


def test_a_grpc_port_in_use_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    from .conftest import spawn_server

    # Given a server holding its gRPC port
    first = spawn_server(model_dir, tmp_path)
    try:
        # When a second server is started on the same gRPC port
        out = subprocess.run(
            [sys.executable, "-m", "argosy.serving", "--model-dir", str(model_dir),
             "--port", "0", "--grpc-port", str(first.grpc_port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        # Then it exits 1 saying which port, without a traceback
        assert out.returncode == 1, out.stderr[-2000:]
        assert f"cannot listen: cannot bind gRPC on 127.0.0.1:{first.grpc_port}" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        assert first.terminate() == 0


def test_the_default_model_dir_is_the_pipelines_output_and_the_image_sets_kserves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from argosy.serving.__main__ import build_parser

    # Given no ARGOSY_MODEL_DIR: a checkout after `make run` serves models/
    monkeypatch.delenv("ARGOSY_MODEL_DIR", raising=False)
    assert str(build_parser().parse_args([]).model_dir) == "models"
    # And the image's variable (KServe's mount) wins over that default
    monkeypatch.setenv("ARGOSY_MODEL_DIR", "/mnt/models")
    assert str(build_parser().parse_args([]).model_dir) == "/mnt/models"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-batch", "0", "argument --max-batch: must be at least 1, got 0"),
        ("--batch-max-rows", "-4", "argument --batch-max-rows: must be at least 1, got -4"),
        ("--max-connections", "many", "argument --max-connections: expected a whole number"),
        ("--max-body-bytes", "1.5", "argument --max-body-bytes: expected a whole number"),
        ("--log-sample-rate", "1.5", "argument --log-sample-rate: must be from 0 to 1, got 1.5"),
        ("--log-capacity-rows", "0", "argument --log-capacity-rows: must be at least 1"),
        ("--log-batch-rows", "0", "argument --log-batch-rows: must be at least 1"),
        ("--log-flush-seconds", "0", "argument --log-flush-seconds: must be above 0, got 0"),
        ("--grace-seconds", "nan", "argument --grace-seconds: must be at least 0, got nan"),
        ("--intra-op-threads", "-1", "argument --intra-op-threads: must be at least 0"),
        ("--port", "70000", "argument --port: must be 0 to 65535, got 70000"),
        ("--grpc-port", "-1", "argument --grpc-port: must be 0 to 65535, got -1"),
        ("--log-level", "loud", "argument --log-level: expected DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_an_out_of_range_setting_is_a_usage_error_that_names_it(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from argosy.serving.__main__ import build_parser

    # Given a setting the server cannot run with / Then parsing stops with a usage error
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([option, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ARGOSY_MAX_BATCH", "lots", "argument --max-batch: expected a whole number, got 'lots'"),
        ("ARGOSY_BATCHING", "disabled",
         "argument --batching/--no-batching: expected on or off, got 'disabled'"),
    ],
)  # fmt: skip
def test_a_bad_environment_setting_is_a_usage_error_before_anything_starts(
    variable: str, value: str, message: str, model_dir: Path, tmp_path: Path
) -> None:
    import os

    # Given a valid model but a setting in the environment it cannot run with, and a log dir
    logdir = tmp_path / "predlog"
    env = {**os.environ, variable: value, "ARGOSY_PREDICTION_LOG": str(logdir)}
    out = subprocess.run(
        [sys.executable, "-m", "argosy.serving", "--model-dir", str(model_dir), "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    # Then it exits 2 naming the option, that the environment may have set it, and no traceback
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr
    assert "or by its environment variable; see --help" in out.stderr
    assert "Traceback" not in out.stderr
    # and nothing was served or written
    assert "listening" not in out.stderr
    assert not logdir.exists()


def test_a_given_option_wins_over_a_bad_environment_value_and_switches_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from argosy.serving.__main__ import build_parser, settings

    # Given environment values the server cannot run with
    monkeypatch.setenv("ARGOSY_MAX_BATCH", "lots")
    monkeypatch.setenv("ARGOSY_LOG_LEVEL", "warn")  # logging's own name: accepted
    # When the command line gives --max-batch / Then the given value is used, nothing refused
    opts = settings(vars(build_parser().parse_args(["--max-batch", "5"])))
    assert opts["max_batch"] == 5
    assert opts["log_level"] == "WARN"
    assert settings({"max_batch": 5})["max_batch"] == 5  # and so for serve()'s own callers
    # And a default taken from the bad environment value is refused, naming the option
    with pytest.raises(ValueError, match="argument --max-batch: expected a whole number"):
        settings({})
    # And serve()'s callers get the command line's checks too
    with pytest.raises(ValueError, match="argument --batch-max-wait-us: must be 0 to 10000"):
        settings({"max_batch": 5, "batch_max_wait_us": 1_000_000})
    with pytest.raises(TypeError, match="unknown serve"):
        settings({"max_batch": 5, "max_bacth": 1})
    with pytest.raises(ValueError, match="argument --max-connections: expected a whole number"):
        settings({"max_batch": 5, "max_connections": None})  # None is only gRPC's "off"
    assert settings({"max_batch": 5, "grpc_port": None})["grpc_port"] is None
    # And ARGOSY_BATCHING is on or off, never a guess
    for value, on in (("off", False), ("NO", False), ("0", False), ("yes", True), ("on", True)):
        monkeypatch.setenv("ARGOSY_BATCHING", value)
        assert settings({"max_batch": 5})["batching"] is on, value
    monkeypatch.setenv("ARGOSY_BATCHING", "disabled")
    with pytest.raises(ValueError, match="--batching/--no-batching: expected on or off"):
        settings({"max_batch": 5})
    assert settings({"max_batch": 5, "batching": True})["batching"] is True


def test_the_command_line_wins_over_the_environment_all_the_way_to_the_server(
    tmp_path: Path,
) -> None:
    import os

    # Given bad ARGOSY_PORT and ARGOSY_LOG_LEVEL values that the command line overrides, and no
    # model directory (so that the server stops right after its settings are read)
    env = {**os.environ, "ARGOSY_PORT": "abc", "ARGOSY_LOG_LEVEL": "loud"}
    missing = str(tmp_path / "no-model")
    args = ["--model-dir", missing, "--port", "0", "--log-level", "INFO"]
    out = subprocess.run(
        [sys.executable, "-m", "argosy.serving", *args],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    # Then the server gets as far as the model and says what is missing, without a traceback
    assert out.returncode == 1, out.stderr[-2000:]
    assert "metadata.json: missing from the model directory" in out.stderr
    assert "Traceback" not in out.stderr
    # And under `argosy serve` (whose CLI configures logging first) --log-level still decides
    argosy = Path(sys.executable).parent / "argosy"
    quiet = subprocess.run(
        [str(argosy), "serve", "--model-dir", missing, "--log-level", "CRITICAL"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert quiet.returncode == 1
    assert "missing from the model directory" not in quiet.stderr
