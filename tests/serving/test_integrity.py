"""The server refuses to become ready unless sha256(model.onnx) equals the pinned value."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from .conftest import Subprocess, infer_body, spawn_server, valid_rows

INFER = "/v2/models/example-model/infer"


def copy_model(model_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst


def assert_not_ready(srv: Subprocess, why: str) -> None:
    c = srv.client()
    assert c.request("GET", "/v2/health/live")[0] == 200  # alive: the probe must not restart it
    status, doc = c.json("GET", "/v2/health/ready")
    assert status == 400
    assert doc["ready"] is False
    assert why in doc["error"]
    status, doc = c.json("GET", "/v2/models/example-model/ready")
    assert status == 400
    assert why in doc["error"]
    status, doc = c.json("POST", INFER, infer_body(valid_rows(1)))
    assert status == 503
    assert "not ready" in doc["error"]
    metrics = c.request("GET", "/metrics")[2].decode()
    assert "argosy_model_ready 0" in metrics


def test_one_flipped_byte_keeps_the_server_not_ready(
    model_dir: Path, tmp_path: Path, spawned: list[Subprocess]
) -> None:
    # Given a model file with one byte flipped after metadata.json recorded its sha256
    model = copy_model(model_dir, tmp_path)
    data = bytearray((model / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (model / "model.onnx").write_bytes(bytes(data))
    # When the server starts
    srv = spawn_server(model, tmp_path)
    spawned.append(srv)
    # Then it stays alive but not ready, says why on the ready endpoint and in its log
    assert_not_ready(srv, "integrity check failed")
    actual = hashlib.sha256(bytes(data)).hexdigest()
    assert actual in srv.log()
    assert "integrity check failed" in srv.log()


def test_pinned_sha256_from_env_overrides_metadata(
    model_dir: Path, tmp_path: Path, spawned: list[Subprocess]
) -> None:
    # Given an intact model but an overlay pinning a different sha256
    srv = spawn_server(model_dir, tmp_path, env={"ARGOSY_MODEL_SHA256": "ab" * 32})
    spawned.append(srv)
    # Then the server is not ready
    assert_not_ready(srv, "ab" * 32)


def test_pinned_sha256_and_version_from_arguments(
    model_dir: Path, tmp_path: Path, spawned: list[Subprocess]
) -> None:
    # Given the right pinned sha256 and a pinned version passed as arguments
    sha = hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest()
    srv = spawn_server(
        model_dir,
        tmp_path,
        "--model-sha256",
        sha.upper(),
        "--model-version",
        "42",
        env={"ARGOSY_MODEL_SHA256": "00" * 32},  # the argument wins over the environment
    )
    spawned.append(srv)
    c = srv.client()
    # Then it is ready and serves the pinned version
    assert c.json("GET", "/v2/health/ready") == (200, {"ready": True})
    status, doc = c.json(
        "POST", "/v2/models/example-model/versions/42/infer", infer_body(valid_rows(1))
    )
    assert status == 200
    assert doc["model_version"] == "42"
    metrics = c.request("GET", "/metrics")[2].decode()
    assert f'argosy_model_info{{name="example-model",version="42",sha256="{sha}"}} 1' in metrics
    assert srv.terminate() == 0


def test_missing_model_directory_exits_non_zero(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "argosy.serving", "--model-dir", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "nope/metadata.json: missing from the model directory" in proc.stderr
