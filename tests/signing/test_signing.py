"""The OpenSSF signature over a served directory: sign, verify, and every way it must fail.

Both verifiers are run on each bundle: ``model-signing``'s own (promote, verify) and the key-mode
reader the server uses at load (:func:`argosy.signing.verify_key_bundle`); they must agree.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from argosy import signing

from .keys import KeyPair


def served(tmp_path: Path) -> Path:
    """A small served directory: the model, its metadata and a nested file."""
    d = tmp_path / "served"
    (d / "extra").mkdir(parents=True)
    (d / "model.onnx").write_bytes(bytes(range(256)) * 4)
    (d / "metadata.json").write_text(json.dumps({"threshold": 0.5, "name": "m"}))
    (d / "extra" / "vocabulary.txt").write_text("a\nb\n")
    return d


def signed(tmp_path: Path, key: KeyPair) -> tuple[Path, str]:
    d = served(tmp_path)
    return d, signing.sign(d, signing.Signer(private_key=key.private))


def refusals(d: Path, key: KeyPair, digest: str | None) -> tuple[str, str]:
    """The messages of both verifiers (each must refuse)."""
    with pytest.raises(signing.SignatureError) as full:
        signing.verify(d, signing.Trust(path=key.public), digest)
    with pytest.raises(signing.SignatureError) as light:
        signing.verify_key_bundle(d, key.public, digest)
    return str(full.value), str(light.value)


def test_a_signed_directory_verifies_with_both_verifiers(tmp_path: Path, key: KeyPair) -> None:
    # Given a directory signed with a throwaway key
    d, digest = signed(tmp_path, key)
    # Then the bundle is in the directory, its sha256 is what sign returned
    assert (d / signing.SIGNATURE_FILE).exists()
    assert signing.bundle_sha256(d) == digest
    # And both verifiers accept it, pinned or not, and the server's check passes
    signing.verify(d, signing.Trust(path=key.public), digest)
    signing.verify_key_bundle(d, key.public, digest)
    signing.verify_key_bundle(d, key.public)
    assert signing.verify_at_load(d, signing.Trust(path=key.public), digest) is None
    # And the signed statement lists every served file (the bundle excepted)
    bundle = json.loads((d / signing.SIGNATURE_FILE).read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    names = [r["name"] for r in statement["predicate"]["resources"]]
    assert names == ["extra/vocabulary.txt", "metadata.json", "model.onnx"]


@pytest.mark.parametrize("name", ["model.onnx", "metadata.json", "extra/vocabulary.txt"])
def test_one_flipped_byte_in_any_served_file_is_refused(
    tmp_path: Path, key: KeyPair, name: str
) -> None:
    # Given a signed directory with one byte of one served file flipped
    d, digest = signed(tmp_path, key)
    data = bytearray((d / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / name).write_bytes(bytes(data))
    # Then both verifiers refuse it and name the file
    for message in refusals(d, key, digest):
        assert f"changed since signing: {name}" in message
    assert f"changed since signing: {name}" in str(
        signing.verify_at_load(d, signing.Trust(path=key.public), digest)
    )


def test_an_added_or_a_missing_file_is_refused(tmp_path: Path, key: KeyPair) -> None:
    # Given a signed directory with a file added
    d, digest = signed(tmp_path, key)
    (d / "override.json").write_text("{}")
    # Then it is refused, naming it
    for message in refusals(d, key, digest):
        assert "not signed: override.json" in message
    # And with a signed file removed instead
    (d / "override.json").unlink()
    (d / "extra" / "vocabulary.txt").unlink()
    for message in refusals(d, key, digest):
        assert "missing: extra/vocabulary.txt" in message


def test_another_key_another_bundle_and_a_forged_payload_are_refused(
    tmp_path: Path, key: KeyPair, other_key: KeyPair
) -> None:
    # Given a directory signed with an attacker's key
    d, _ = signed(tmp_path, other_key)
    # Then our key refuses it
    full, light = refusals(d, key, None)
    assert "not signed with the key" in light
    assert "does not verify" in full
    # And a bundle other than the pinned one is refused before anything else
    for message in refusals(d, key, "0" * 64):
        assert f"the pin names {'0' * 64}" in message
    # When the signed payload is edited (a file's digest replaced) under the genuine signature
    d2, _ = signed(tmp_path / "second", key)
    bundle = json.loads((d2 / signing.SIGNATURE_FILE).read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "ab" * 32
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (d2 / signing.SIGNATURE_FILE).write_text(json.dumps(bundle))
    # Then the signature no longer verifies
    full, light = refusals(d2, key, None)
    assert "signature does not verify" in light
    assert "does not verify" in full


def test_a_bundle_that_leaves_files_out_is_refused(tmp_path: Path, key: KeyPair) -> None:
    # Given a genuine bundle whose signer chose to leave metadata.json out of the manifest
    import model_signing

    d = served(tmp_path)
    hashing = (
        model_signing.hashing.Config()
        .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
        .set_ignored_paths(paths=[signing.SIGNATURE_FILE, "metadata.json"], ignore_git_paths=False)
    )
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=key.private
    ).set_hashing_config(hashing).sign(d, d / signing.SIGNATURE_FILE)
    # Then both verifiers refuse its serialization (metadata.json would go unchecked)
    for message in refusals(d, key, None):
        assert "every file but the bundle" in message


def test_an_unsigned_directory_and_a_symlink_are_refused(tmp_path: Path, key: KeyPair) -> None:
    # Given an unsigned directory and a trust
    d = served(tmp_path)
    trust = signing.Trust(path=key.public)
    # Then the server's check refuses it
    assert "is not signed: no model.sig" in str(signing.verify_at_load(d, trust))
    # And a pinned bundle with no trust configured is refused too
    assert "no signing trust" in str(signing.verify_at_load(d, None, "a" * 64))
    # And signing off (no trust, nothing pinned) lets it through
    assert signing.verify_at_load(d, None, None) is None
    # When a signed directory gains a symlink in place of a file
    d2, digest = signed(tmp_path / "second", key)
    (d2 / "metadata.json").unlink()
    (d2 / "metadata.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text("{}")
    # Then it is refused
    assert "symlink" in refusals(d2, key, digest)[1]


def test_certificate_mode_signs_and_verifies_offline(
    tmp_path: Path, ca: dict[str, Path], key: KeyPair
) -> None:
    # Given a directory signed with a leaf certificate issued by a throwaway CA
    d = served(tmp_path)
    signer = signing.Signer(private_key=ca["leaf_key"], certificate=ca["leaf"], chain=(ca["ca"],))
    digest = signing.sign(d, signer)
    trust = signing.Trust(path=ca["ca"])
    # Then the CA chain verifies it (model-signing, also at load)
    assert trust.mode == "certificate"
    signing.verify(d, trust, digest)
    assert signing.verify_at_load(d, trust, digest) is None
    # And a flipped byte is refused, naming the file
    (d / "metadata.json").write_text(json.dumps({"threshold": 1.0, "name": "m"}))
    with pytest.raises(signing.SignatureError, match=r"changed since signing: metadata\.json"):
        signing.verify(d, trust, digest)
    # And a public key is no trust for a certificate bundle
    assert signing.verify_at_load(d, signing.Trust(path=key.public), digest) is not None


def test_bad_signing_settings_fail_with_a_message(tmp_path: Path, key: KeyPair) -> None:
    # Given a trust file that holds no PEM block, and contradictory signer settings
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    # Then each fails with a message, not a traceback
    with pytest.raises(signing.SignatureError, match="no PEM block"):
        _ = signing.Trust(path=junk).mode
    with pytest.raises(signing.SignatureError, match="either a private key or Sigstore"):
        signing.Signer(private_key=key.private, sigstore=True)
    with pytest.raises(signing.SignatureError, match="certificate and its chain"):
        signing.Signer(private_key=key.private, certificate=key.public)
    with pytest.raises(signing.SignatureError, match="identity and an issuer"):
        signing.Trust(sigstore_identity="me@example.com")
    with pytest.raises(signing.SignatureError, match=r"signing .* failed"):
        signing.sign(served(tmp_path), signing.Signer(private_key=junk))
