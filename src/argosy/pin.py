"""Read and write the model pin that an overlay's ``model.yaml`` carries.

The pin is a strategic-merge patch of the base's InferenceService, whose placeholder name
:data:`PATCH_TARGET` every patch targets. Its annotations carry the registered model's name (the
contract's ``name:``; ``manifests/transformers/model-name`` names the InferenceService and every
resource serving it after it), the MLflow model version, the run id, the sha256 of ``model.onnx``
and, for a signed model, the sha256 of its signature bundle (:mod:`argosy.signing`, which covers
every served file); the predictor's env repeats the hashes and the version so the model server can
refuse a directory that does not match. An overlay that pins no model yet still names the model.
Every file is read with :func:`load_yaml`, which refuses duplicate keys: kustomize keeps the first
of two equal keys and PyYAML the last, so a file with both would deploy another value than the one
checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from argosy.proc import git_show

#: The environments an overlay deploys, in promotion order.
ENVIRONMENTS = ("staging", "production")
OVERLAYS_DIR = "manifests/overlays"
PIN_FILE = "model.yaml"

ANNOTATION_PREFIX = "argosy.io/"
MODEL_NAME = ANNOTATION_PREFIX + "model-name"
MODEL_VERSION = ANNOTATION_PREFIX + "model-version"
MODEL_SHA256 = ANNOTATION_PREFIX + "model-sha256"
MODEL_SIGNATURE = ANNOTATION_PREFIX + "model-signature-sha256"
RUN_ID = ANNOTATION_PREFIX + "mlflow-run-id"
ENV_SHA256 = "ARGOSY_MODEL_SHA256"
ENV_VERSION = "ARGOSY_MODEL_VERSION"
ENV_SIGNATURE = "ARGOSY_MODEL_SIGNATURE_SHA256"
#: The InferenceService's name in manifests/base: what the pin patches, before it is renamed.
PATCH_TARGET = "model"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

HEADER = """\
# The model pinned for the {env} environment.
# Written only by `argosy promote` (and `argosy rollback`): do not edit by hand.
# `argosy promote verify` rejects a pin that the MLflow registry and the gate report do not back.
"""
UNPINNED = """\
# No model is pinned yet: the first promotion fills in the annotations and the predictor. Until
# then argosy.io/model-name, contract.yaml's `name:`, names what the overlay deploys.
"""


class PinError(ValueError):
    """A model.yaml that cannot be read as a pin."""


def pin_path(env: str) -> str:
    """Repository-relative path of an environment's pin.

    Raises:
        PinError: ``env`` is not one of :data:`ENVIRONMENTS`.
    """
    if env not in ENVIRONMENTS:
        raise PinError(f"unknown environment {env!r}; expected {' or '.join(ENVIRONMENTS)}")
    return f"{OVERLAYS_DIR}/{env}/{PIN_FILE}"


def overlay_dir(env: str) -> str:
    """Repository-relative directory of an environment's overlay (``kubectl kustomize`` it)."""
    return pin_path(env).rsplit("/", 1)[0]


def pins_at(repo: Path, rev: str) -> dict[str, ModelPin | None]:
    """What every environment pins at git revision ``rev`` (None: no model pinned yet).

    Raises:
        PinError: An environment's pin is missing at ``rev`` or cannot be read.
        GitError: ``repo`` is not a git repository.
    """
    pins: dict[str, ModelPin | None] = {}
    for env in ENVIRONMENTS:
        text = git_show(repo, rev, pin_path(env))
        if text is None:
            raise PinError(f"{pin_path(env)} does not exist at {rev}")
        pins[env] = parse_pin(text, f"{rev}:{pin_path(env)}")
    return pins


def pins_in(root: Path) -> dict[str, ModelPin | None]:
    """What every environment's pin in the checkout ``root`` pins, skipping missing overlays.

    Raises:
        PinError: A pin that exists cannot be read.
    """
    return {
        env: read_pin(root / pin_path(env))
        for env in ENVIRONMENTS
        if (root / pin_path(env)).exists()
    }


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].line + 1}; kustomize "
                    "keeps the first value, PyYAML the last)",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> list:
    """Every document of a YAML text, refusing duplicate keys.

    Raises:
        yaml.YAMLError: The text is not YAML or a mapping repeats a key (the error names both).
    """
    return [d for d in yaml.load_all(text, Loader=_UniqueKeyLoader) if d is not None]


@dataclass(frozen=True)
class ModelPin:
    """The model an overlay deploys.

    Attributes:
        name: Registered model name in MLflow.
        version: MLflow model version (a positive integer, as a string).
        sha256: sha256 of ``model.onnx``; the server refuses any other file.
        run_id: MLflow run that produced the model.
        storage_uri: Where KServe's storage initializer fetches the model directory from.
        signature_sha256: sha256 of the directory's signature bundle ("" for an unsigned model).
    """

    name: str
    version: str
    sha256: str
    run_id: str
    storage_uri: str
    signature_sha256: str = ""

    def __post_init__(self) -> None:
        if not self.version.isdigit() or int(self.version) < 1:
            raise PinError(f"model version must be a positive integer, got {self.version!r}")
        if not SHA256_RE.match(self.sha256):
            raise PinError(f"sha256 must be 64 lowercase hex characters, got {self.sha256!r}")
        if self.signature_sha256 and not SHA256_RE.match(self.signature_sha256):
            raise PinError(
                "the signature sha256 must be 64 lowercase hex characters, "
                f"got {self.signature_sha256!r}"
            )
        if not self.name or not self.run_id or not self.storage_uri:
            raise PinError("name, run_id and storage_uri must be non-empty")


def read_pin(path: Path) -> ModelPin | None:
    """Read the pin from an overlay's ``model.yaml``.

    Args:
        path: The overlay's ``model.yaml``.

    Returns:
        The pinned model, or None when the overlay pins no model yet (empty version annotation).

    Raises:
        PinError: The file is missing, is not YAML, or carries an inconsistent pin.
    """
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise PinError(f"{path}: no such file") from exc
    return parse_pin(text, str(path))


def parse_pin(text: str, source: str) -> ModelPin | None:
    """Parse the pin from a ``model.yaml``'s text (a file, or a version of it in git history).

    Args:
        text: The YAML text.
        source: Where the text came from, for messages.

    Returns:
        The pinned model, or None when the overlay pins no model yet (empty version annotation).

    Raises:
        PinError: The text is not YAML or carries an inconsistent pin.
    """
    return pin_of(_load(text, source), source)


def pin_of(doc: dict, source: str) -> ModelPin | None:
    """The pin an InferenceService (a ``model.yaml`` patch, or the rendered one) carries.

    Args:
        doc: The InferenceService document.
        source: Where it came from, for messages.

    Returns:
        The pinned model, or None when it pins no model (empty version annotation).

    Raises:
        PinError: An inconsistent pin (annotations and env differ, a malformed value).
    """
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    version = str(annotations.get(MODEL_VERSION) or "")
    if not version:
        return None
    model = ((doc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    env = {e.get("name"): str(e.get("value", "")) for e in model.get("env") or []}
    sha = str(annotations.get(MODEL_SHA256) or "")
    signature = str(annotations.get(MODEL_SIGNATURE) or "")
    for var, value, what in ((ENV_SHA256, sha, "sha256"), (ENV_SIGNATURE, signature, "signature")):
        if env.get(var, "") != value:
            raise PinError(f"{source}: the annotation's {what} and {var} differ")
    if env.get(ENV_VERSION, "") != version:
        raise PinError(f"{source}: the annotation's version and {ENV_VERSION} differ")
    try:
        return ModelPin(
            name=str(annotations.get(MODEL_NAME) or ""),
            version=version,
            sha256=sha,
            run_id=str(annotations.get(RUN_ID) or ""),
            storage_uri=str(model.get("storageUri") or ""),
            signature_sha256=signature,
        )
    except PinError as exc:
        raise PinError(f"{source}: {exc}") from exc


def parse_model_name(text: str, source: str) -> str:
    """The model an overlay serves (``argosy.io/model-name``), pinned or not yet.

    Args:
        text: The YAML text of a ``model.yaml``.
        source: Where the text came from, for messages.

    Returns:
        The model's name, which names the InferenceService and every resource serving it.

    Raises:
        PinError: The text is not a pin or names no model.
    """
    doc = _load(text, source)
    name = str((doc["metadata"].get("annotations") or {}).get(MODEL_NAME) or "")
    if not name:
        raise PinError(f"{source}: no {MODEL_NAME} annotation; the overlay cannot name its model")
    return name


def _load(text: str, source: str) -> dict:
    """The pin's YAML document: an InferenceService patch of the base's placeholder."""
    try:
        docs = load_yaml(text)
    except yaml.YAMLError as exc:
        raise PinError(f"{source}: not valid YAML: {exc}") from exc
    if len(docs) != 1:
        raise PinError(
            f"{source}: expected one InferenceService patch, found {len(docs)} documents"
        )
    doc = docs[0]
    if not isinstance(doc, dict) or doc.get("kind") != "InferenceService":
        raise PinError(f"{source}: expected an InferenceService patch")
    if not isinstance(doc.get("metadata"), dict):
        raise PinError(f"{source}: the InferenceService patch has no metadata")
    if doc["metadata"].get("name") != PATCH_TARGET:
        raise PinError(
            f"{source}: metadata.name must be {PATCH_TARGET!r}, the base InferenceService it "
            f"patches (the served name is the {MODEL_NAME} annotation), "
            f"got {doc['metadata'].get('name')!r}"
        )
    return doc


def render_pin(pin: ModelPin, env: str, extra_annotations: dict[str, str] | None = None) -> str:
    """The text of an overlay's ``model.yaml`` pinning ``pin``.

    Args:
        pin: The model to deploy.
        env: Environment name, for the header comment.
        extra_annotations: More annotations (provenance, ``link.argocd.argoproj.io/*`` links).

    Returns:
        YAML text that :func:`parse_pin` reads back as ``pin``.
    """
    annotations = {
        MODEL_NAME: pin.name,
        MODEL_VERSION: pin.version,
        MODEL_SHA256: pin.sha256,
        RUN_ID: pin.run_id,
        **({MODEL_SIGNATURE: pin.signature_sha256} if pin.signature_sha256 else {}),
        **(extra_annotations or {}),
    }
    env = [
        {"name": ENV_SHA256, "value": pin.sha256},
        {"name": ENV_VERSION, "value": pin.version},
    ]
    if pin.signature_sha256:
        env.append({"name": ENV_SIGNATURE, "value": pin.signature_sha256})
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": PATCH_TARGET, "annotations": annotations},
        "spec": {
            "predictor": {
                "model": {
                    "storageUri": pin.storage_uri,
                    "env": env,
                }
            }
        },
    }
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
    return HEADER.format(env=env) + body


def render_unpinned(name: str, env: str) -> str:
    """The text of an overlay's ``model.yaml`` that pins no model yet but names it.

    The overlay then renders (and ArgoCD deploys) the InferenceService named ``name`` without a
    model; the first ``argosy promote`` replaces the file with :func:`render_pin`'s.

    Args:
        name: The model's name (contract.yaml ``name:``).
        env: Environment name, for the header comment.

    Returns:
        YAML text that :func:`parse_pin` reads as no pin and :func:`parse_model_name` as ``name``.
    """
    doc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": PATCH_TARGET, "annotations": {MODEL_NAME: name, MODEL_VERSION: ""}},
    }
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
    return HEADER.format(env=env) + UNPINNED + body
