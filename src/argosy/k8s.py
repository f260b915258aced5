"""Strict, offline validation of Kubernetes documents and ``kubectl kustomize`` rendering.

Custom resources are checked against strict JSON schemas laid out as the public CRDs catalog lays
them out (``<schema_dir>/<group>/<kind>_<version>.json``); the ones this project renders are
vendored in ``schemas/crds-catalog`` (see its PROVENANCE.md). Built-in kinds are checked against
the strict schemas that the ``kubernetes-validate`` package ships. Strict means an unknown field is
an error, and a kind with no schema at all is an error too: nothing is passed unchecked.

Usage from the shell (renders directories with kustomize, reads files as multi-document YAML)::

    python -m argosy.k8s manifests/overlays/staging manifests/overlays/production
    python -m argosy.k8s vendor   # rewrite schemas/crds-catalog from the pinned catalog

"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml

from argosy import proc

SCHEMA_DIR_ENV = "ARGOSY_SCHEMA_DIR"
SCHEMA_SOURCE_ENV = "ARGOSY_SCHEMA_SOURCE"
KUBERNETES_VERSION = "1.32.0"
"""Kubernetes release whose built-in schemas the documents are checked against."""

_REPO_ROOT = Path(__file__).resolve().parents[2]
_TOP_LEVEL = {"apiVersion", "kind", "metadata"}
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

VENDORED_DIR = _REPO_ROOT / "schemas" / "crds-catalog"
"""The strict schemas of the custom resources the project renders, committed with it."""
CRDS_CATALOG_REPO = "datreeio/CRDs-catalog"
CRDS_CATALOG_COMMIT = "7b1e26ef9deea49293714d204c1a2270aab1178f"
CRDS_CATALOG_URL = "https://codeload.github.com/{repo}/tar.gz/{commit}"
SHARED_CATALOG = _REPO_ROOT.parent / "shared" / "schemas" / "crds-catalog"
"""The offline copy of the catalog that sits next to a checkout on the project's machines."""
VENDORED_SCHEMAS = (
    "argoproj.io/application_v1alpha1.json",
    "argoproj.io/applicationset_v1alpha1.json",
    "argoproj.io/appproject_v1alpha1.json",
    "argoproj.io/cronworkflow_v1alpha1.json",
    "argoproj.io/eventsource_v1alpha1.json",
    "argoproj.io/sensor_v1alpha1.json",
    "argoproj.io/workflow_v1alpha1.json",
    "argoproj.io/workflowtemplate_v1alpha1.json",
    "external-secrets.io/externalsecret_v1.json",
    "karpenter.sh/nodepool_v1.json",
    "kubernetes.dask.org/daskcluster_v1.json",
    "kubernetes.dask.org/daskjob_v1.json",
    "monitoring.coreos.com/podmonitor_v1.json",
    "monitoring.coreos.com/prometheusrule_v1.json",
    "serving.kserve.io/inferenceservice_v1beta1.json",
    "serving.kserve.io/servingruntime_v1alpha1.json",
)
"""Every custom-resource kind that overlays, components, argocd/ and workflows/generated render,
or that the generated workflows make the cluster create (a resource template's or a Sensor
trigger's Workflow, the DaskJob of ``train.engine: dask`` and the DaskCluster its operator makes).

Add a line (then ``make schemas``) when the project starts rendering a new kind; a test renders
everything and fails on a kind missing here, or on a schema here that nothing renders.
"""
_ARGO_EVENTS = "argoproj/argo-events @ 6478ece4 `api/jsonschema/schema.json`"
_DASK_CRDS = (
    "dask/dask-kubernetes @ 1daa175 (2025-07-04; the CRDs of release 2025.4.3, the pinned chart) "
    "`dask_kubernetes/operator/deployment/helm/dask-kubernetes-operator/crds/*.yaml` (BSD-3-Clause)"
)
CONVERTED_SCHEMAS = {
    "argoproj.io/eventsource_v1alpha1.json": _ARGO_EVENTS,
    "argoproj.io/sensor_v1alpha1.json": _ARGO_EVENTS,
    "argoproj.io/workflow_v1alpha1.json": "argoproj/argo-workflows @ f016ad89 (v4.1.2) "
    "`manifests/base/crds/full/argoproj.io_workflows.yaml`",
    "kubernetes.dask.org/daskcluster_v1.json": _DASK_CRDS,
    "kubernetes.dask.org/daskjob_v1.json": _DASK_CRDS,
}
"""Strict conversions in the offline catalog next to a checkout, each with its upstream origin.

They are not the public catalog's copies (where it has any: its Argo Events ones accept any spec),
so a refresh from the downloaded tarball keeps the committed ones.
"""
_PROVENANCE = "PROVENANCE.md"


class SchemaDirError(FileNotFoundError):
    """The directory of custom-resource schemas is missing."""


class KustomizeError(RuntimeError):
    """``kubectl kustomize`` failed or printed something that is not YAML."""


def schema_dir() -> Path:
    """Locate the strict custom-resource schemas.

    ``$ARGOSY_SCHEMA_DIR`` wins; otherwise the vendored ``<repo root>/schemas/crds-catalog``, so
    validation needs neither the network nor anything outside the checkout.

    Returns:
        The directory holding ``<group>/<kind>_<version>.json``.

    Raises:
        SchemaDirError: The directory does not exist; the message says where it looked and how to
            write the schemas.
    """
    configured = os.environ.get(SCHEMA_DIR_ENV)
    path = Path(configured) if configured else VENDORED_DIR
    if not path.is_dir():
        origin = f"${SCHEMA_DIR_ENV}" if configured else f"the default (${SCHEMA_DIR_ENV} is unset)"
        raise SchemaDirError(
            f"custom-resource schemas not found at {path} (from {origin}). "
            f"Run `make schemas` to write the vendored ones from the pinned CRDs catalog, or set "
            f"${SCHEMA_DIR_ENV} to a directory laid out as <group>/<kind>_<version>.json."
        )
    return path


def catalog_source(cache: Path | None = None) -> Path:
    """Find the pinned CRDs catalog to vendor schemas from, downloading it as a last resort.

    ``$ARGOSY_SCHEMA_SOURCE`` wins; otherwise ``../shared/schemas/crds-catalog`` next to the
    checkout when present; otherwise the catalog's tarball at :data:`CRDS_CATALOG_COMMIT`,
    downloaded once into ``cache`` (default ``<repo root>/.tools/crds-catalog-<commit>``).

    Raises:
        SchemaDirError: ``$ARGOSY_SCHEMA_SOURCE`` names a directory that does not exist.
    """
    configured = os.environ.get(SCHEMA_SOURCE_ENV)
    if configured:
        if not Path(configured).is_dir():
            raise SchemaDirError(f"${SCHEMA_SOURCE_ENV} is {configured}, not a directory")
        return Path(configured)
    if SHARED_CATALOG.is_dir():
        return SHARED_CATALOG
    cache = cache or _REPO_ROOT / ".tools" / f"crds-catalog-{CRDS_CATALOG_COMMIT}"
    if not cache.is_dir():
        url = CRDS_CATALOG_URL.format(repo=CRDS_CATALOG_REPO, commit=CRDS_CATALOG_COMMIT)
        download_catalog(url, cache)
    return cache


def download_catalog(url: str, dest: Path, timeout_s: float = 60.0) -> None:
    """Extract the vendored schemas and the licence from the catalog's tarball at ``url``.

    Only the files :func:`vendor_schemas` reads are written, under ``dest``; a partial download
    leaves nothing behind.
    """
    wanted = {*VENDORED_SCHEMAS, "LICENSE"}
    print(f"downloading {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - a pinned https URL (file: in tests)  # nosec B310
        data = response.read()
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            relative = member.name.partition("/")[2]  # drop the CRDs-catalog-<commit>/ prefix
            if member.isfile() and relative in wanted:
                target = partial / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
    partial.rename(dest)


def vendor_schemas(
    source: Path, out: Path = VENDORED_DIR, keep: frozenset[str] = frozenset()
) -> None:
    """Write :data:`VENDORED_SCHEMAS`, the licence and PROVENANCE.md from ``source`` into ``out``.

    The copies are byte for byte, and PROVENANCE.md depends only on them and the pin, so running
    this twice, or on two machines, writes the same files. Any other file under ``out`` goes.

    Args:
        source: A CRDs catalog laid out as ``<group>/<kind>_<version>.json``.
        out: The vendored directory to (re)write.
        keep: Files to keep as they already are in ``out`` instead of copying them.

    Raises:
        SchemaDirError: ``source`` lacks a file to vendor; nothing is written.
    """
    files = [*VENDORED_SCHEMAS, "LICENSE"]
    origins = {name: (out if name in keep else source) / name for name in files}
    missing = [str(path) for path in origins.values() if not path.is_file()]
    if missing:
        raise SchemaDirError(f"cannot vendor schemas, missing: {', '.join(missing)}")
    contents = {name: path.read_bytes() for name, path in origins.items()}
    shutil.rmtree(out, ignore_errors=True)
    for name, data in contents.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    (out / _PROVENANCE).write_text(provenance(contents))


def provenance(contents: dict[str, bytes]) -> str:
    """PROVENANCE.md for the vendored files ``contents`` (path -> bytes)."""
    rows = "\n".join(
        f"| `{name}` | `{hashlib.sha256(data).hexdigest()}` |"
        + (" strict conversion, see above |" if name in CONVERTED_SCHEMAS else " |")
        for name, data in sorted(contents.items())
        if name != "LICENSE"
    )
    conversions = "\n".join(
        f"  - `{name}`: from {CONVERTED_SCHEMAS[name]}"
        for name in sorted(contents)
        if name in CONVERTED_SCHEMAS
    )
    return f"""# Vendored custom-resource schemas

Strict JSON schemas (objects reject unknown fields) of exactly the custom-resource kinds this
project renders, so `argosy promote`, `make demo` and the tests validate manifests with no network
and nothing outside the checkout. Written by `make schemas` (`python -m argosy.k8s vendor`); do
not edit by hand. To cover a new kind, add it to `VENDORED_SCHEMAS` in `src/argosy/k8s.py` and
run `make schemas`.

- Source: [{CRDS_CATALOG_REPO}](https://github.com/{CRDS_CATALOG_REPO}) (Apache-2.0, `LICENSE`)
  at commit `{CRDS_CATALOG_COMMIT}`,
  copied byte for byte from the offline copy next to a checkout (`../shared/schemas/crds-catalog`).
- Strict conversions from that copy, not in the public catalog in a strict form:
{conversions}

| file | sha256 | note |
|---|---|---|
{rows}
"""


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
        out = proc.run([kubectl, "kustomize", str(path)], timeout=120)
    except proc.CommandError as exc:
        raise KustomizeError(f"{exc} (kubectl with Kustomize v5+ renders the overlays)") from exc
    try:
        return [d for d in yaml.safe_load_all(out) if d is not None]
    except yaml.YAMLError as exc:  # pragma: no cover - kustomize only prints YAML it produced
        raise KustomizeError(f"kubectl kustomize {path} printed invalid YAML: {exc}") from exc


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Load a Kustomize directory (rendered) or a multi-document YAML file."""
    if path.is_dir():
        return render_kustomize(path)
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def vendor_main(argv: Sequence[str]) -> int:
    """``python -m argosy.k8s vendor``: rewrite the vendored schemas from the pinned catalog."""
    parser = argparse.ArgumentParser(
        prog="python -m argosy.k8s vendor",
        description=f"Copy the strict schemas of the kinds the project renders from the CRDs "
        f"catalog at {CRDS_CATALOG_COMMIT[:12]} into the vendored directory, with PROVENANCE.md.",
    )
    parser.add_argument(
        "--source",
        type=Path,
        help=f"Catalog directory. Default: ${SCHEMA_SOURCE_ENV}, else {SHARED_CATALOG} when "
        "present, else the pinned tarball (downloaded into .tools/).",
    )
    parser.add_argument("--out", type=Path, default=VENDORED_DIR, help="Directory to rewrite.")
    args = parser.parse_args(argv)
    try:
        source = args.source or catalog_source()
        # The tarball lacks the strict conversions: keep the committed ones.
        downloaded = args.source is None and source.name.startswith("crds-catalog-")
        keep = frozenset(CONVERTED_SCHEMAS) if downloaded else frozenset()
        vendor_schemas(source, args.out, keep=keep)
    except (SchemaDirError, OSError, tarfile.TarError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(VENDORED_SCHEMAS)} schemas from {source}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Validate each path given on the command line; print errors; return a process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["vendor"]:
        return vendor_main(argv[1:])
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
