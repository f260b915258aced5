"""Sign and verify a served model directory in the OpenSSF model signing format.

``argosy register`` signs the run's ``serving/`` directory (``model.onnx``, ``metadata.json`` and
every other file there) with the OpenSSF ``model-signing`` package; the bundle is written into the
directory as :data:`SIGNATURE_FILE`, which is the one file the signature leaves out. The pin
carries the bundle's sha256, so git names exactly one signed directory. ``argosy promote`` and
``argosy promote verify`` verify the bundle with ``model-signing`` itself; the model server does
too for certificate and Sigstore bundles, while key-mode bundles (the default) are checked at
load by :func:`verify_key_bundle`, which reads the same bundle with ``cryptography`` and
``hashlib`` only: importing ``model-signing`` takes about 0.45 s (it loads sigstore, pydantic and
boto3), which alone would break the server's 0.5 s cold start. The tests check both verifiers
against the same bundles.

Trust is a PEM file: a public key (key mode) or a certificate chain ending at the CA that issued
the signing certificate (certificate mode). Keyless Sigstore signing and verification (OIDC) are
options that need the network. Nothing is imported at module import beyond the standard library,
so the light serving install imports this module for free.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argosy.hashing import file_sha256

SIGNATURE_FILE = "model.sig"
#: How the directory is serialized into the signed manifest: every regular file by its sha256,
#: no symlinks, only the bundle itself left out. A bundle that says otherwise is refused.
SERIALIZATION = {
    "method": "files",
    "hash_type": "sha256",
    "allow_symlinks": False,
    "ignore_paths": [SIGNATURE_FILE],
}
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SHA256_HEX = frozenset("0123456789abcdef")
PASSWORD_ENV = "ARGOSY_SIGNING_KEY_PASSWORD"  # noqa: S105 - the variable's name, not a password
SIGNING_KEY_ENV = "ARGOSY_SIGNING_KEY_PEM"
"""The private key's PEM text, where it comes from a Secret as a variable (the Argo tasks)."""
SIGNING_TRUST_ENV = "ARGOSY_SIGNING_TRUST_PEM"
"""The trust's PEM text, likewise."""


class SignatureError(ValueError):
    """A model directory is not signed, or its signature does not verify; says which file."""


@dataclass(frozen=True)
class Signer:
    """How ``argosy register`` signs.

    Attributes:
        private_key: PEM elliptic-curve private key (key and certificate modes).
        certificate: PEM signing certificate (certificate mode).
        chain: PEM certificates from the signing certificate's issuer up to the root.
        sigstore: Sign keylessly with Sigstore (OIDC; needs the network).
    """

    private_key: Path | None = None
    certificate: Path | None = None
    chain: tuple[Path, ...] = ()
    sigstore: bool = False

    def __post_init__(self) -> None:
        if self.sigstore == (self.private_key is not None):
            raise SignatureError("sign with either a private key or Sigstore (keyless), not both")
        if (self.certificate is None) != (not self.chain):
            raise SignatureError(
                "certificate mode needs both the signing certificate and its chain (at least the "
                "issuing CA)"
            )


@dataclass(frozen=True)
class Trust:
    """What a signature must verify against.

    Attributes:
        path: PEM public key (key mode) or CA certificate chain (certificate mode).
        sigstore_identity: Expected signer identity of a keyless Sigstore bundle.
        sigstore_issuer: Expected OIDC issuer of that identity.
    """

    path: Path | None = None
    sigstore_identity: str | None = None
    sigstore_issuer: str | None = None

    def __post_init__(self) -> None:
        keyless = self.sigstore_identity is not None or self.sigstore_issuer is not None
        if keyless and not (self.sigstore_identity and self.sigstore_issuer):
            raise SignatureError("Sigstore verification needs both an identity and an issuer")
        if keyless == (self.path is not None):
            raise SignatureError(
                "trust either a PEM file (public key or CA chain) or a Sigstore identity"
            )

    @property
    def mode(self) -> str:
        """``key``, ``certificate`` or ``sigstore``, from what the PEM file holds."""
        if self.path is None:
            return "sigstore"
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SignatureError(f"cannot read the signing trust {self.path}: {exc}") from exc
        if "-----BEGIN PUBLIC KEY-----" in text:
            return "key"
        if "-----BEGIN CERTIFICATE-----" in text:
            return "certificate"
        raise SignatureError(
            f"{self.path}: expected a PEM public key or certificate chain (no PEM block found)"
        )


@contextmanager
def pem_from_env(path: Path | None, variable: str) -> Iterator[Path | None]:
    """``path``, else the PEM text of ``$variable`` in a private temporary file, else None.

    The file is readable by its owner only and removed on exit.
    """
    text = os.environ.get(variable, "")
    if path is not None or not text.strip():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="argosy-pem-") as tmp:
        file = Path(tmp) / "key.pem"
        file.touch(mode=0o600)
        file.write_text(text if text.endswith("\n") else text + "\n")
        yield file


def trust_from(path: str | os.PathLike[str] | None) -> Trust | None:
    """A :class:`Trust` of a PEM file, or None when no path is given (signing off)."""
    return Trust(path=Path(path)) if path else None


def bundle_sha256(model_dir: Path) -> str:
    """sha256 of the directory's signature bundle: what the pin carries.

    Raises:
        SignatureError: The directory has no bundle.
    """
    try:
        return file_sha256(model_dir / SIGNATURE_FILE)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise SignatureError(f"{model_dir} is not signed: no {SIGNATURE_FILE}") from exc


def _hashing_config():
    from model_signing import hashing

    return (
        hashing.Config()
        .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
        .set_ignored_paths(paths=[SIGNATURE_FILE], ignore_git_paths=False)
    )


def sign(model_dir: Path, signer: Signer) -> str:
    """Sign every file of ``model_dir`` into ``model_dir/model.sig``; return the bundle's sha256.

    Raises:
        SignatureError: The key or certificate cannot be used, or signing failed.
    """
    import model_signing

    config = model_signing.signing.Config().set_hashing_config(_hashing_config())
    try:
        if signer.sigstore:
            config.use_sigstore_signer(use_ambient_credentials=True)
        elif signer.certificate is not None:
            config.use_certificate_signer(
                private_key=signer.private_key,
                signing_certificate=signer.certificate,
                certificate_chain=list(signer.chain),
            )
        else:
            password = os.environ.get(PASSWORD_ENV) or None
            config.use_elliptic_key_signer(private_key=signer.private_key, password=password)
        config.sign(model_dir, model_dir / SIGNATURE_FILE)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"signing {model_dir} failed: {exc}") from exc
    return bundle_sha256(model_dir)


def verify(model_dir: Path, trust: Trust, expected_sha256: str | None = None) -> None:
    """Verify ``model_dir`` against its bundle with the ``model-signing`` package.

    Args:
        model_dir: The served directory, with its ``model.sig``.
        trust: The key, CA chain or Sigstore identity the bundle must verify against.
        expected_sha256: The bundle's pinned sha256 (None: not pinned).

    Raises:
        SignatureError: No bundle, another bundle than the pinned one, a bad signature, or a
            file added, missing or changed since signing (named).
    """
    _check_pinned_bundle(model_dir, expected_sha256)
    import model_signing

    config = model_signing.verifying.Config().set_hashing_config(_hashing_config())
    try:
        mode = trust.mode
        if mode == "sigstore":
            config.use_sigstore_verifier(
                identity=str(trust.sigstore_identity), oidc_issuer=str(trust.sigstore_issuer)
            )
        elif mode == "certificate":
            config.use_certificate_verifier(certificate_chain=[trust.path])
        else:
            config.use_elliptic_key_verifier(public_key=trust.path)
        statement = _statement(_read_bundle(model_dir))
        _check_serialization(statement, model_dir)
        config.verify(model_dir, model_dir / SIGNATURE_FILE)
    except SignatureError:
        raise
    except Exception as exc:  # model-signing raises ValueError, its own and OpenSSL's errors
        if str(exc).startswith("Signature mismatch"):
            # The signature verified, the files do not: name them in plain hex.
            check_files(model_dir, statement)
        raise SignatureError(f"{model_dir}: signature does not verify: {exc}") from exc


def verify_at_load(
    model_dir: Path, trust: Trust | None, expected_sha256: str | None = None
) -> str | None:
    """The model server's check: why ``model_dir`` must not serve, or None when it may.

    Signing is off when neither a trust nor a pinned bundle is given. A pinned bundle without a
    trust fails (it could not be checked), as does a trust with no bundle in the directory.
    Key-mode bundles are checked by :func:`verify_key_bundle` (no ``model-signing`` import);
    other modes by :func:`verify`.
    """
    if trust is None and not expected_sha256:
        return None
    try:
        if trust is None:
            raise SignatureError(
                f"the pin names signature bundle {expected_sha256} but no signing trust is "
                "configured to verify it (--signing-trust / ARGOSY_SIGNING_TRUST)"
            )
        if trust.mode == "key" and trust.path is not None:
            verify_key_bundle(model_dir, trust.path, expected_sha256)
        else:
            verify(model_dir, trust, expected_sha256)
    except SignatureError as exc:
        return f"signature check failed: {exc}"
    return None


def _check_pinned_bundle(model_dir: Path, expected_sha256: str | None) -> None:
    actual = bundle_sha256(model_dir)
    if expected_sha256 and actual != expected_sha256.strip().lower():
        raise SignatureError(
            f"{model_dir / SIGNATURE_FILE} has sha256 {actual}, the pin names {expected_sha256}"
        )


def _read_bundle(model_dir: Path) -> dict:
    try:
        bundle = json.loads((model_dir / SIGNATURE_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        raise SignatureError(
            f"{model_dir / SIGNATURE_FILE}: not a signature bundle: {exc}"
        ) from exc
    if not isinstance(bundle, dict) or bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise SignatureError(f"{model_dir / SIGNATURE_FILE}: not a {BUNDLE_MEDIA_TYPE}")
    return bundle


def _envelope(bundle: dict) -> tuple[bytes, bytes]:
    """The DSSE envelope's payload and its one signature, decoded."""
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureError(f"the bundle carries no {PAYLOAD_TYPE} DSSE envelope")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise SignatureError("the DSSE envelope must carry exactly one signature")
    try:
        payload = base64.b64decode(str(envelope.get("payload", "")), validate=True)
        signature = base64.b64decode(str(signatures[0].get("sig", "")), validate=True)
    except (binascii.Error, AttributeError) as exc:
        raise SignatureError(f"the DSSE envelope is not base64: {exc}") from exc
    return payload, signature


def _statement(bundle: dict) -> dict:
    payload, _ = _envelope(bundle)
    try:
        statement = json.loads(payload)
    except ValueError as exc:
        raise SignatureError(f"the signed statement is not JSON: {exc}") from exc
    if (
        not isinstance(statement, dict)
        or statement.get("_type") != STATEMENT_TYPE
        or statement.get("predicateType") != PREDICATE_TYPE
    ):
        raise SignatureError(f"the signed statement is not a {PREDICATE_TYPE} statement")
    return statement


def _check_serialization(statement: dict, model_dir: Path) -> None:
    serialization = (statement.get("predicate") or {}).get("serialization")
    if not isinstance(serialization, dict) or {
        **serialization,
        "ignore_paths": sorted(serialization.get("ignore_paths") or []),
    } != {**SERIALIZATION, "ignore_paths": sorted(SERIALIZATION["ignore_paths"])}:
        raise SignatureError(
            f"{model_dir / SIGNATURE_FILE} was made with serialization {serialization}, "
            f"expected {SERIALIZATION} (every file but the bundle, no symlinks)"
        )


def _pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload)


def verify_key_bundle(
    model_dir: Path, public_key: Path, expected_sha256: str | None = None
) -> None:
    """Verify a key-mode bundle and every file it lists, without importing ``model-signing``.

    The same checks as ``model-signing``'s elliptic-key verifier, in the same order: the bundle's
    media type, the key hint (sha256 of the PEM public key), the ECDSA signature over the DSSE
    pre-authentication encoding, the in-toto statement and its root digest, then the directory:
    the same file names (no file added or missing, no symlink) with the same sha256.

    Args:
        model_dir: The served directory, with its ``model.sig``.
        public_key: PEM public key (P-256, P-384 or P-521).
        expected_sha256: The bundle's pinned sha256 (None: not pinned).

    Raises:
        SignatureError: What does not verify, naming the file.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    _check_pinned_bundle(model_dir, expected_sha256)
    bundle = _read_bundle(model_dir)
    try:
        key = serialization.load_pem_public_key(public_key.read_bytes())
    except (OSError, ValueError) as exc:
        raise SignatureError(f"cannot load the public key {public_key}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size not in (256, 384, 521):
        raise SignatureError(f"{public_key}: expected a P-256, P-384 or P-521 public key")
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    material = bundle.get("verificationMaterial") or {}
    hint = (material.get("publicKey") or {}).get("hint") if isinstance(material, dict) else None
    if hint != hashlib.sha256(pem).hexdigest():
        raise SignatureError(
            f"{model_dir / SIGNATURE_FILE} was not signed with the key of {public_key} "
            f"(key hint {hint!r})"
        )
    payload, signature = _envelope(bundle)
    digest = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
    try:
        key.verify(signature, _pae(payload), ec.ECDSA(digest))
    except InvalidSignature as exc:
        raise SignatureError(
            f"{model_dir / SIGNATURE_FILE}: the signature does not verify"
        ) from exc
    statement = _statement(bundle)
    _check_serialization(statement, model_dir)
    check_files(model_dir, statement)


def check_files(model_dir: Path, statement: dict) -> None:
    """Compare the directory with the signed statement's resources (names and sha256).

    Raises:
        SignatureError: A file added, missing or changed (named), a symlink, or a statement
            whose root digest does not match its resources.
    """
    resources = (statement.get("predicate") or {}).get("resources")
    if not isinstance(resources, list):
        raise SignatureError("the signed statement lists no resources")
    expected: dict[str, str] = {}
    root = hashlib.sha256()
    for item in resources:
        if not isinstance(item, dict) or item.get("algorithm") != "sha256":
            raise SignatureError(f"unsupported resource in the signed statement: {item!r}")
        name, digest = str(item.get("name")), str(item.get("digest", "")).lower()
        if len(digest) != 64 or not set(digest) <= SHA256_HEX or name in expected:
            raise SignatureError(f"malformed resource in the signed statement: {item!r}")
        expected[name] = digest
        root.update(bytes.fromhex(digest))
    subjects = statement.get("subject") or [{}]
    if (subjects[0].get("digest") or {}).get("sha256") != root.hexdigest():
        raise SignatureError("the signed statement's root digest does not match its resources")
    actual = {name: file_sha256(model_dir / name) for name in served_files(model_dir)}
    problems = []
    if extra := sorted(set(actual) - set(expected)):
        problems.append(f"not signed: {', '.join(extra)}")
    if missing := sorted(set(expected) - set(actual)):
        problems.append(f"missing: {', '.join(missing)}")
    problems += [
        f"changed since signing: {name} (sha256 {actual[name]}, signed {expected[name]})"
        for name in sorted(set(actual) & set(expected))
        if actual[name] != expected[name]
    ]
    if problems:
        raise SignatureError(f"{model_dir} does not match its signature: " + "; ".join(problems))


def served_files(model_dir: Path) -> Sequence[str]:
    """Every file of the directory, relative and POSIX, but the bundle.

    Raises:
        SignatureError: The directory holds a symlink or something that is not a file.
    """
    names = []
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir).as_posix()
        if path.is_symlink():
            raise SignatureError(f"{model_dir}: {rel} is a symlink; a signed model has none")
        if path.is_dir():
            continue
        if not path.is_file():
            raise SignatureError(f"{model_dir}: {rel} is not a regular file")
        if rel != SIGNATURE_FILE:
            names.append(rel)
    return names
