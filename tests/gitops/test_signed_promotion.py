"""Signed models from registration to promotion: the pin names the bundle, every step checks it.

Git: bare origins in tmp_path. MLflow: SQLite with artifacts in tmp_path, so a test can tamper
with what the storage serves exactly where KServe's storage initializer would fetch it. Keys are
throwaway ones generated in the test (tests/signing/keys.py).
"""

from __future__ import annotations

import tempfile
import urllib.parse
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argosy import signing
from argosy.cli import app
from argosy.gitops import promote as promotion
from argosy.pin import ENV_SIGNATURE, MODEL_SIGNATURE, read_pin
from argosy.registry import models

from ..signing.keys import KeyPair, make_key
from .gitops_fixtures import MODEL, Pipeline, Remote, run_git

STAGING = "manifests/overlays/staging/model.yaml"


@pytest.fixture
def key(tmp_path: Path) -> KeyPair:
    directory = tmp_path / "keys"
    directory.mkdir()
    return make_key(directory)


def stored(version: models.RegisteredVersion) -> Path:
    """The served directory in the artifact store (what the storage URI names)."""
    return Path(urllib.parse.urlsplit(version.storage_uri).path)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_register_signs_every_served_file_and_promote_pins_the_bundle(
    remote: Remote, pipeline: Pipeline, mlflow_client, key: KeyPair
) -> None:
    # Given a gate-passed run, registered with a signing key
    model = pipeline.train()
    code, out = cli("register", "--gate", str(model.gate_json), "--signing-key", str(key.private))
    assert code == 0, out
    version = models.get_version(mlflow_client, MODEL, "candidate")
    # Then the stored directory carries a bundle over model.onnx and metadata.json, tagged
    assert version.signature_sha256 == signing.bundle_sha256(stored(version))
    signing.verify(stored(version), signing.Trust(path=key.public), version.signature_sha256)
    assert f"signature {version.signature_sha256[:12]}" in out
    # And registering again keeps that bundle (a pin may already name it)
    again = models.register(model.gate_json, mlflow_client, signing.Signer(private_key=key.private))
    assert again.signature_sha256 == version.signature_sha256
    # When it is promoted to staging with the trust
    clone = remote.clone("work")
    code, out = cli(
        "promote", "--env", "staging", "--repo-dir", str(clone), "--signing-trust", str(key.public)
    )
    assert code == 0, out
    run_git(clone, "pull", "--quiet")
    # Then the pin carries the bundle's sha256 as annotation and server env
    text = (clone / STAGING).read_text()
    assert f"{MODEL_SIGNATURE}: {version.signature_sha256}" in text
    assert ENV_SIGNATURE in text
    assert read_pin(clone / STAGING).signature_sha256 == version.signature_sha256
    # And verify passes with the trust, requiring a signature
    code, out = cli(
        "promote", "verify", "--repo-dir", str(clone), "--signing-trust", str(key.public),
        "--require-signature", "--env", "staging",
    )  # fmt: skip
    assert code == 0, out
    assert f"signature {version.signature_sha256[:12]}" in out
    # But not without a trust to check the signature against
    code, out = cli("promote", "verify", "--repo-dir", str(clone), "--env", "staging")
    assert code == 1
    assert "its signature cannot be checked: no signing trust" in out


@pytest.mark.parametrize("name", ["metadata.json", "model.onnx"])
def test_a_flipped_byte_in_storage_is_refused_at_promote_and_at_verify(
    remote: Remote, pipeline: Pipeline, mlflow_client, key: KeyPair, name: str
) -> None:
    # Given a signed, registered model promoted to staging
    version = models.register(
        pipeline.train().gate_json, mlflow_client, signing.Signer(private_key=key.private)
    )
    clone = remote.clone("work")
    trust = ["--signing-trust", str(key.public)]
    assert cli("promote", "--env", "staging", "--repo-dir", str(clone), *trust)[0] == 0
    run_git(clone, "pull", "--quiet")
    before, branches = remote.main(), remote.branches()
    # When one byte of a served file is flipped in the artifact store
    path = stored(version) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    # Then promoting it to production is refused, naming the file; no branch, no commit
    code, out = cli("promote", "--env", "production", "--repo-dir", str(clone), *trust)
    assert code == 1
    assert f"changed since signing: {name}" in out
    assert "nothing was committed, pushed or opened" in out
    assert remote.main() == before
    assert remote.branches() == branches
    # And verify of what staging pins fails the same way
    code, out = cli("promote", "verify", "--repo-dir", str(clone), "--env", "staging", *trust)
    assert code == 1
    assert f"changed since signing: {name}" in out


def test_an_unsigned_model_is_refused_where_a_signature_is_required(
    remote: Remote, pipeline: Pipeline, mlflow_client, key: KeyPair
) -> None:
    # Given a model registered without signing
    version = models.register(pipeline.train().gate_json, mlflow_client)
    assert version.signature_sha256 == ""
    clone = remote.clone("work")
    before = remote.main()
    # When it is promoted with --require-signature, Then it is refused and nothing is pushed
    code, out = cli("promote", "--env", "staging", "--repo-dir", str(clone), "--require-signature")
    assert code == 1
    assert "unsigned, and --require-signature is set" in out
    assert remote.main() == before
    # And once promoted without the requirement, verify with it fails the pin
    promotion.promote(clone, version, "staging", body="")
    run_git(clone, "pull", "--quiet")
    code, out = cli("promote", "verify", "--repo-dir", str(clone), "--require-signature")
    assert code == 1
    assert "unsigned; this check requires a signed model" in out


def test_a_pin_naming_another_bundle_fails_verify_and_sync(
    remote: Remote, pipeline: Pipeline, mlflow_client, key: KeyPair
) -> None:
    # Given a signed model and a pin claiming another bundle (annotation and env both edited)
    version = models.register(
        pipeline.train().gate_json, mlflow_client, signing.Signer(private_key=key.private)
    )
    pin = promotion.pin_for(version)
    forged = promotion.ModelPin(**{**pin.__dict__, "signature_sha256": "0" * 64})
    # Then verify names the mismatch against the registry and the stored bundle
    problems = models.verify_pin(forged, mlflow_client, trust=signing.Trust(path=key.public))
    assert any("pinned signature bundle 000" in p for p in problems)
    assert any(f"the pin names {'0' * 64}" in p for p in problems)
    # And registry sync moves no alias
    with pytest.raises(models.RegistryError, match="signature bundle"):
        models.sync_aliases({"staging": forged}, mlflow_client, name=MODEL)


def test_signing_failure_registers_nothing(
    pipeline: Pipeline, mlflow_client, tmp_path: Path
) -> None:
    # Given a "key" file that is no key
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    model = pipeline.train()
    # When registration is asked to sign with it
    code, out = cli("register", "--gate", str(model.gate_json), "--signing-key", str(junk))
    # Then it fails with a message and no version exists
    assert code == 1
    assert "nothing was registered" in out
    assert mlflow_client.search_model_versions(f"name='{MODEL}'") == []
    served = Path(urllib.parse.urlsplit(model.artifact_uri).path) / "serving"
    assert not (served / signing.SIGNATURE_FILE).exists()


def test_keys_from_secret_variables_sign_and_verify(
    remote: Remote,
    pipeline: Pipeline,
    mlflow_client,
    key: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the key and the trust as PEM text in variables, as the Argo tasks get them
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, key.private.read_text())
    monkeypatch.setenv(signing.SIGNING_TRUST_ENV, key.public.read_text())
    # (temporary files of this test only, so other tests' copies running alongside do not count)
    private_tmp = remote.root / "private-tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    model = pipeline.train()
    # When the model is registered and promoted without key or trust options
    code, out = cli("register", "--gate", str(model.gate_json))
    assert code == 0, out
    clone = remote.clone("work")
    code, out = cli("promote", "--env", "staging", "--repo-dir", str(clone))
    # Then it was signed, verified and pinned with its bundle
    assert code == 0, out
    version = models.get_version(mlflow_client, MODEL, "candidate")
    assert version.signature_sha256
    run_git(clone, "pull", "--quiet")
    assert read_pin(clone / STAGING).signature_sha256 == version.signature_sha256
    # And no copy of the key is left in the temporary directory
    assert not list(private_tmp.glob("argosy-pem-*"))
