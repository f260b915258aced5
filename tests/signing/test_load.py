"""The model server verifies the signature at load and stays not ready on any mismatch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from argosy import signing
from argosy.serving.model import load_model

from ..serving.conftest import Subprocess, infer_body, spawn_server, valid_rows
from .keys import KeyPair

REPO = Path(__file__).resolve().parents[2]
INFER = "/v2/models/example-model/infer"


def signed_copy(model_dir: Path, tmp_path: Path, key: KeyPair) -> tuple[Path, str]:
    d = tmp_path / "model"
    shutil.copytree(model_dir, d)
    return d, signing.sign(d, signing.Signer(private_key=key.private))


def test_a_signed_model_loads_ready(model_dir: Path, tmp_path: Path, key: KeyPair) -> None:
    # Given a signed copy of the served model and its pinned bundle
    d, digest = signed_copy(model_dir, tmp_path, key)
    # When it is loaded with the trust
    model = load_model(d, signature_sha256=digest, signing_trust=key.public)
    # Then it is ready
    assert model.ready, model.reason


def test_a_tampered_threshold_next_to_the_pinned_model_is_not_served(
    model_dir: Path, tmp_path: Path, key: KeyPair
) -> None:
    # Given a signed model whose metadata.json is edited to threshold 1.0 (flags no fraud);
    # model.onnx and its sha256 are untouched
    d, digest = signed_copy(model_dir, tmp_path, key)
    meta = json.loads((d / "metadata.json").read_text())
    meta["threshold"] = 1.0
    (d / "metadata.json").write_text(json.dumps(meta))
    # When it is loaded
    model = load_model(d, signature_sha256=digest, signing_trust=key.public)
    # Then it is not ready, and the reason names the file
    assert not model.ready
    assert "signature check failed" in model.reason
    assert "changed since signing: metadata.json" in model.reason
    assert model.session is None  # ONNX Runtime never opened it


def test_an_unsigned_directory_or_an_unverifiable_pin_is_not_served(
    model_dir: Path, tmp_path: Path, key: KeyPair
) -> None:
    # Given the unsigned model with a trust configured
    model = load_model(model_dir, signing_trust=key.public)
    # Then it is not ready
    assert not model.ready
    assert "no model.sig" in model.reason
    # And a pinned bundle without a trust is not served either
    d, digest = signed_copy(model_dir, tmp_path, key)
    model = load_model(d, signature_sha256=digest)
    assert not model.ready
    assert "no signing trust" in model.reason


def test_the_server_stays_not_ready_on_a_flipped_byte(
    model_dir: Path, tmp_path: Path, key: KeyPair, spawned: list[Subprocess]
) -> None:
    # Given a signed model with one byte of model.onnx flipped after signing
    d, digest = signed_copy(model_dir, tmp_path, key)
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / "model.onnx").write_bytes(bytes(data))
    pinned = {"ARGOSY_SIGNING_TRUST": str(key.public), "ARGOSY_MODEL_SIGNATURE_SHA256": digest}
    # When the server starts with the pin and the trust from its environment
    srv = spawn_server(d, tmp_path, env=pinned)
    spawned.append(srv)
    c = srv.client()
    # Then it is alive, not ready, and serves nothing
    assert c.request("GET", "/v2/health/live")[0] == 200
    status, doc = c.json("GET", "/v2/health/ready")
    assert status == 400
    assert "changed since signing: model.onnx" in doc["error"]
    assert c.json("POST", INFER, infer_body(valid_rows(1)))[0] == 503
    assert "signature check failed" in srv.log()


def test_the_server_serves_a_verified_model_without_importing_model_signing(
    model_dir: Path, tmp_path: Path, key: KeyPair, spawned: list[Subprocess]
) -> None:
    # Given a signed model
    d, digest = signed_copy(model_dir, tmp_path, key)
    # When the server starts with its trust and pinned bundle
    srv = spawn_server(
        d, tmp_path, "--signing-trust", str(key.public), "--signature-sha256", digest
    )
    spawned.append(srv)
    # Then it answers inferences
    assert srv.client().json("POST", INFER, infer_body(valid_rows(2)))[0] == 200
    # And verifying at load imports neither model-signing nor sigstore (cold start)
    code = (
        "import sys; from pathlib import Path; from argosy.serving.model import load_model; "
        f"m = load_model(Path({str(d)!r}), signature_sha256={digest!r}, "
        f"signing_trust={str(key.public)!r}); assert m.ready, m.reason; "
        "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    loaded = set(out.stdout.split())
    assert not loaded & {"model_signing", "sigstore", "sigstore_models", "boto3", "pydantic"}
