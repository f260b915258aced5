"""Serving stays light: no heavy imports, a fast start, and ``argosy[serve]`` alone is enough."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from .conftest import Client, Subprocess, infer_body, spawn_server, valid_rows

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "mlflow",
    "pandas",
    "dvc",
    "great_expectations",
    "evidently",
    "typer",
    "xgboost",
    "sklearn",
)


def test_serving_imports_none_of_the_pipeline_stack() -> None:
    # When every serving module is imported in a fresh interpreter
    code = (
        "import sys, argosy.serving, argosy.serving.__main__, argosy.serving.server, "
        "argosy.serving.model, argosy.serving.v2, argosy.serving.metrics, argosy.serving.predlog, "
        "argosy.serving.batching, argosy.serving.grpc_v2; "
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    loaded = set(out.stdout.split())
    # Then no heavy package is loaded, and pyarrow/fsspec wait until a log is configured
    assert "onnxruntime" not in loaded  # loaded only by load_model, after the integrity check
    for name in (*HEAVY, "pyarrow", "fsspec", "tritonclient", "kserve"):
        assert name not in loaded, name


def test_help_explains_the_options_and_their_environment_variables() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "argosy.serving", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    for needle in (
        "Open Inference Protocol",
        "--model-dir",
        "ARGOSY_MODEL_SHA256",
        "ARGOSY_MODEL_VERSION",
        "--prediction-log",
        "--log-sample-rate",
        "--max-batch",
        "SIGTERM",
    ):
        assert needle in out, needle


def test_cold_start_to_first_inference(
    model_dir: Path, tmp_path: Path, spawned: list[Subprocess]
) -> None:
    # Bound generous for a loaded CI box without compiled bytecode (uv sync does not compile
    # it): importing the pipeline stack by mistake would still blow it. `make bench-serve`
    # records the real figure.
    t0 = time.monotonic()
    srv = spawn_server(model_dir, tmp_path, "--prediction-log", str(tmp_path / "log"))
    spawned.append(srv)
    client = Client(srv.port)
    body = infer_body(valid_rows(1))
    while True:
        status, _, _ = client.request("POST", "/v2/models/example-model/infer", body)
        if status == 200:
            break
        assert time.monotonic() - t0 < 10
    elapsed = time.monotonic() - t0
    assert elapsed < 5.0, f"cold start took {elapsed:.2f}s"
    assert srv.terminate() == 0


@pytest.mark.slow
def test_serve_extra_alone_serves_in_a_fresh_virtualenv(
    model_dir: Path, tmp_path: Path, spawned: list[Subprocess]
) -> None:
    # Given a fresh virtualenv with only argosy[serve] installed from this checkout
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", f"{REPO}[serve]"],
        check=True,
        timeout=900,
        cwd=tmp_path,
    )
    listing = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    ).stdout
    installed = {p["name"].lower().replace("-", "_") for p in json.loads(listing)}
    for name in ("mlflow", "pandas", "dvc", "great_expectations", "evidently", "typer"):
        assert name not in installed, name
    # When the server starts from that environment (not from the source tree)
    srv = spawn_server(model_dir, tmp_path, python=python, use_source_tree=False, timeout=60)
    spawned.append(srv)
    # Then it answers an inference request
    client = Client(srv.port)
    status, doc = client.json("POST", "/v2/models/example-model/infer", infer_body(valid_rows(2)))
    assert status == 200
    assert doc["outputs"][0]["shape"] == [2]
    assert srv.terminate() == 0
