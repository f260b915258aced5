"""Strict, offline validation of Kubernetes documents and ``kubectl kustomize`` rendering.

Custom resources are checked against the strict JSON schemas of the public CRDs catalog
(``<schema_dir>/<group>/<kind>_<version>.json``); built-in kinds against the strict schemas that
the ``kubernetes-validate`` package ships. Strict means an unknown field is an error, and a kind
with no schema at all is an error too: nothing is passed unchecked.

Usage from the shell (renders directories with kustomize, reads files as multi-document YAML)::

    python -m argosy.k8s manifests/overlays/staging manifests/overlays/production
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml

SCHEMA_DIR_ENV = "ARGOSY_SCHEMA_DIR"
KUBERNETES_VERSION = "1.32.0"
"""Kubernetes release whose built-in schemas the documents are checked against."""

_REPO_ROOT = Path(__file__).resolve().parents[2]
_TOP_LEVEL = {"apiVersion", "kind", "metadata"}
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class SchemaDirError(FileNotFoundError):
    """The directory of custom-resource schemas is missing."""


class KustomizeError(RuntimeError):
    """``kubectl kustomize`` failed or printed something that is not YAML."""


def schema_dir() -> Path:
    """Locate the strict custom-resource schemas.

    ``$ARGOSY_SCHEMA_DIR`` wins; otherwise ``<repo root>/../shared/schemas/crds-catalog``, where the
    offline copy of the datreeio CRDs catalog lives next to a checkout, else
    ``<repo root>/.tools/crds-catalog``, where ``make schemas`` downloads it.

    Returns:
        The directory holding ``<group>/<kind>_<version>.json``.

    Raises:
        SchemaDirError: The directory does not exist; the message says where it looked and how to
            fetch the schemas.
    """
    configured = os.environ.get(SCHEMA_DIR_ENV)
    path = (
        Path(configured)
        if configured
        else _REPO_ROOT.parent / "shared" / "schemas" / "crds-catalog"
    )
    fetched = _REPO_ROOT / ".tools" / "crds-catalog"  # where `make schemas` puts them
    if not configured and not path.is_dir() and fetched.is_dir():
        return fetched
    if not path.is_dir():
        origin = f"${SCHEMA_DIR_ENV}" if configured else f"the default (${SCHEMA_DIR_ENV} is unset)"
        raise SchemaDirError(
            f"custom-resource schemas not found at {path} (from {origin}). "
            f"Run `make schemas` to fetch the pinned CRDs catalog, or set ${SCHEMA_DIR_ENV} "
            "to a directory laid out as <group>/<kind>_<version>.json."
        )
    return path


_find_schema_dir = schema_dir  # validate_documents' parameter shadows the function's name


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _is_builtin(group: str) -> bool:
    # Core ("v1"), unqualified groups ("apps", "batch", "policy", "autoscaling") and *.k8s.io are
    # Kubernetes' own API groups; anything else is served by a CRD.
    return group == "" or "." not in group or group.endswith(".k8s.io")


@functools.cache
def _builtin_dir(kubernetes_version: str) -> Path:
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = Path(str(root)) / f"v{kubernetes_version}-local-strict"
    if not path.is_dir():
        raise SchemaDirError(
            f"kubernetes-validate ships no strict schemas for {kubernetes_version}"
        )
    return path


@functools.cache
def _builtin_registry(kubernetes_version: str) -> referencing.Registry:
    definitions = json.loads((_builtin_dir(kubernetes_version) / "_definitions.json").read_text())
    resource = referencing.Resource.from_contents(definitions)
    return resource @ referencing.Registry()


@functools.cache
def _builtin_validator(kubernetes_version: str, filename: str) -> jsonschema.Validator | None:
    path = _builtin_dir(kubernetes_version) / filename
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_builtin_registry(kubernetes_version))


def _object_meta_validator(kubernetes_version: str) -> jsonschema.Validator:
    # CRD schemas describe metadata only as "an object"; check it as the strict ObjectMeta instead.
    schema = {"$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{_OBJECT_META}"}
    return jsonschema.Draft202012Validator(schema, registry=_builtin_registry(kubernetes_version))


@functools.cache
def _crd_validator(path: Path) -> jsonschema.Validator:
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def _builtin_filename(group: str, version: str, kind: str) -> str:
    # kubernetes-validate's layout: rbac.authorization.k8s.io/v1 Role -> role-rbac-v1.json
    label = group.split(".", 1)[0]
    return f"{kind.lower()}-{label}-{version}.json" if label else f"{kind.lower()}-{version}.json"


def _format(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    message = error.message
    if len(message) > 300:
        message = message[:300] + "..."
    return f"{where}: {message}"


def _describe(doc: dict[str, Any], index: int) -> str:
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?"
    kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
    return f"document {index} ({kind} {name})"


def _root_properties(schema: dict[str, Any]) -> dict[str, Any]:
    """The root's properties, following a root ``$ref`` (the Argo Events schemas use one)."""
    ref = schema.get("$ref", "")
    if "properties" not in schema and ref.startswith("#/definitions/"):
        return schema["definitions"][ref.removeprefix("#/definitions/")].get("properties", {})
    return schema.get("properties", {})


def validate_document(
    doc: dict[str, Any],
    schema_dir: Path,
    kubernetes_version: str = KUBERNETES_VERSION,
) -> list[str]:
    """Validate one document strictly.

    Args:
        doc: A parsed Kubernetes object.
        schema_dir: Directory of strict custom-resource schemas.
        kubernetes_version: Kubernetes release of the built-in schemas.

    Returns:
        Error messages (field path and reason); empty when the document is valid.
    """
    if not isinstance(doc, dict):
        return [f"not a mapping: {type(doc).__name__}"]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        return ["apiVersion and kind must be non-empty strings"]
    group, version = _split_api_version(api_version)
    if _is_builtin(group):
        filename = _builtin_filename(group, version, kind)
        validator = _builtin_validator(kubernetes_version, filename)
        if validator is None:
            return [
                f"no schema for built-in kind {kind} {api_version} in kubernetes-validate "
                f"{kubernetes_version} (looked for {filename})"
            ]
        return [_format(e) for e in sorted(validator.iter_errors(doc), key=str)]

    path = schema_dir / group / f"{kind.lower()}_{version}.json"
    if not path.is_file():
        return [f"no schema for custom resource {kind} {api_version} (looked for {path})"]
    validator = _crd_validator(path)
    errors = [_format(e) for e in validator.iter_errors(doc)]
    # The catalog closes every nested object but not the document root; close it here.
    allowed = _TOP_LEVEL | set(_root_properties(validator.schema))
    errors += [
        f"(root): additional property {key!r} is not allowed" for key in doc if key not in allowed
    ]
    if isinstance(doc.get("metadata"), dict):
        meta = _object_meta_validator(kubernetes_version)
        errors += ["metadata/" + _format(e) for e in meta.iter_errors(doc["metadata"])]
    return sorted(errors)


def validate_documents(docs: list[dict[str, Any]], schema_dir: Path | None = None) -> list[str]:
    """Validate Kubernetes documents strictly against offline schemas.

    Args:
        docs: Parsed documents, e.g. from :func:`render_kustomize`.
        schema_dir: Directory of strict custom-resource schemas; :func:`schema_dir` when None.

    Returns:
        One message per problem, prefixed with the document's position, kind and name; empty when
        every document is valid.

    Raises:
        SchemaDirError: ``schema_dir`` is None and no schema directory can be found.
    """
    directory = schema_dir if schema_dir is not None else _find_schema_dir()
    errors: list[str] = []
    for index, doc in enumerate(docs):
        prefix = _describe(doc, index)
        errors += [f"{prefix}: {message}" for message in validate_document(doc, directory)]
    return errors


def render_kustomize(path: Path | str, kubectl: str = "kubectl") -> list[dict[str, Any]]:
    """Render a Kustomize directory with ``kubectl kustomize``.

    Args:
        path: Directory holding a ``kustomization.yaml``.
        kubectl: The kubectl executable.

    Returns:
        The rendered documents, in kustomize's output order.

    Raises:
        KustomizeError: kustomize failed (its stderr is in the message) or printed invalid YAML.
    """
    try:
        result = subprocess.run(
            [kubectl, "kustomize", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except FileNotFoundError as exc:
        raise KustomizeError(f"{kubectl} not found: install kubectl (Kustomize v5+)") from exc
    if result.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {path} failed: {result.stderr.strip()}")
    try:
        return [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    except yaml.YAMLError as exc:  # pragma: no cover - kustomize only prints YAML it produced
        raise KustomizeError(f"kubectl kustomize {path} printed invalid YAML: {exc}") from exc


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Load a Kustomize directory (rendered) or a multi-document YAML file."""
    if path.is_dir():
        return render_kustomize(path)
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def main(argv: Sequence[str] | None = None) -> int:
    """Validate each path given on the command line; print errors; return a process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m argosy.k8s",
        description="Render Kustomize directories (or read YAML files) and validate every document "
        "strictly: custom resources against the CRDs catalog, built-in kinds with "
        "kubernetes-validate. Unknown fields and kinds without a schema fail.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="Kustomize directories or YAML files")
    args = parser.parse_args(argv)
    try:
        directory = schema_dir()
    except SchemaDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = False
    for path in args.paths:
        try:
            docs = load_documents(path)
        except (KustomizeError, OSError, yaml.YAMLError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            failed = True
            continue
        errors = validate_documents(docs, directory)
        for message in errors:
            print(f"{path}: {message}", file=sys.stderr)
        failed |= bool(errors)
        print(f"{path}: {len(docs)} documents, {'INVALID' if errors else 'valid'}")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover - exercised through the shell
    raise SystemExit(main())
