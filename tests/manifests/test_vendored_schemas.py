"""The vendored custom-resource schemas: complete, reproducible, and enough on their own.

They cover exactly the kinds the project renders, match a fresh copy of the pinned catalog byte for
byte, and validate manifests in a checkout with no ``../shared`` next to it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from argosy import k8s
from argosy.workflows.codegen import train_settings, workflow_settings
from argosy.workflows.dag import load_pipeline
from argosy.workflows.training import training_template

from ..workflows.embedded import embedded_documents, operator_cluster

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
RENDERED = [
    MANIFESTS / "overlays" / "staging",
    MANIFESTS / "overlays" / "production",
    MANIFESTS / "platform",
    REPO / "argocd",
    REPO / "workflows" / "generated",
]


def _created_by_workflows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the workflows make the cluster create, ``train.engine: dask`` included.

    The documents of resource templates and Sensor triggers in ``docs`` and in the training
    template generated for the dask engine, and the DaskCluster the operator makes of each DaskJob.
    """
    train = train_settings(REPO).model_copy(update={"engine": "dask", "device": "cuda"})
    dask = training_template(load_pipeline(REPO / "dvc.yaml"), workflow_settings(REPO), train)
    created = [d for doc in [*docs, dask.to_dict()] for d in embedded_documents(doc)]
    return created + [operator_cluster(d) for d in created if d["kind"] == "DaskJob"]


def _render_everything(tmp_path: Path) -> list[dict[str, Any]]:
    """Every rendering the project ships, and every document its workflows create.

    The overlays alone and with every component, the platform, argocd/ and workflows/generated.
    """
    docs = [doc for path in RENDERED for doc in k8s.render_kustomize(path)]
    docs += _created_by_workflows(docs)
    components = sorted(p.name for p in (MANIFESTS / "components").iterdir() if p.is_dir())
    for env in ("staging", "production"):
        root = tmp_path / env
        root.mkdir()
        rel = Path(os.path.relpath(MANIFESTS, root))
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [str(rel / "overlays" / env)],
            "components": [str(rel / "components" / c) for c in components],
        }
        (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        docs += k8s.render_kustomize(root)
    return docs


def _files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_vendored_set_is_exactly_the_rendered_custom_kinds(tmp_path: Path) -> None:
    # Given every overlay (alone and with all components), the platform, argocd/ and workflows,
    # and what the workflows create (the drift monitor's Workflow, a DaskJob and its DaskCluster)
    docs = _render_everything(tmp_path)
    # When the custom resources among them are mapped to their schema files
    needed = set()
    for doc in docs:
        group, _, version = doc["apiVersion"].rpartition("/")
        if not k8s._is_builtin(group):
            needed.add(f"{group}/{doc['kind'].lower()}_{version}.json")
    # Then the vendored list is exactly that set, and the directory holds exactly that list
    assert len(needed) > 5
    assert needed == set(k8s.VENDORED_SCHEMAS)
    on_disk = {name for name in _files(k8s.VENDORED_DIR) if name.endswith(".json")}
    assert on_disk == needed
    assert k8s.validate_documents(docs, k8s.VENDORED_DIR) == []


def test_provenance_lists_the_committed_files_hashes() -> None:
    # Given the committed vendored files
    committed = _files(k8s.VENDORED_DIR)
    provenance = committed.pop("PROVENANCE.md").decode()
    # When PROVENANCE.md is written afresh from them
    # Then it is the committed one: every sha256, the pinned commit and the command are in it
    assert provenance == k8s.provenance(committed)
    assert k8s.CRDS_CATALOG_COMMIT in provenance
    assert "make schemas" in provenance
    assert "LICENSE" in committed


def _catalog() -> Path | None:
    configured = os.environ.get(k8s.SCHEMA_SOURCE_ENV)
    if configured:
        return Path(configured)  # must exist: a configured source that is missing fails below
    return k8s.SHARED_CATALOG if k8s.SHARED_CATALOG.is_dir() else None


@pytest.mark.skipif(
    _catalog() is None,
    reason=f"no offline CRDs catalog: neither ${k8s.SCHEMA_SOURCE_ENV} nor {k8s.SHARED_CATALOG}",
)
def test_regenerating_from_the_pinned_catalog_is_byte_identical(tmp_path: Path) -> None:
    # Given the offline copy of the pinned catalog
    source = _catalog()
    assert source is not None
    assert source.is_dir(), f"{source} is not a directory"
    # When the vendored set is written afresh into a temporary directory
    out = tmp_path / "crds-catalog"
    k8s.vendor_schemas(source, out)
    # Then every file, PROVENANCE.md included, is byte for byte the committed one
    fresh, committed = _files(out), _files(k8s.VENDORED_DIR)
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], "run `make schemas` and commit schemas/crds-catalog"


def test_validation_needs_nothing_outside_the_checkout(tmp_path: Path) -> None:
    # Given a copy of the checkout (package, vendored schemas, manifests) with no ../shared
    clone = tmp_path / "fork"
    for part in ("src", "schemas", "manifests"):
        shutil.copytree(REPO / part, clone / part, ignore=shutil.ignore_patterns("__pycache__"))
    assert not (clone.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != k8s.SCHEMA_DIR_ENV}
    env["PYTHONPATH"] = str(clone / "src")
    script = (
        "import sys; from argosy import k8s; print(k8s.schema_dir()); "
        "sys.exit(k8s.main(['manifests/overlays/staging', 'manifests/overlays/production']))"
    )
    # When the copy's own package validates the overlays with the default schema directory
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Then it used the copy's vendored schemas and found both overlays valid
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == str(clone / "schemas" / "crds-catalog")
    assert result.stdout.count(", valid") == 2


def test_schema_dir_defaults_to_the_vendored_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no ARGOSY_SCHEMA_DIR
    monkeypatch.delenv(k8s.SCHEMA_DIR_ENV, raising=False)
    # When the schema directory is resolved
    # Then it is the one inside the repository
    assert k8s.schema_dir() == REPO / "schemas" / "crds-catalog"


def test_vendoring_from_an_incomplete_source_writes_nothing(tmp_path: Path) -> None:
    # Given a vendored directory and a source that lacks one schema
    out = tmp_path / "out"
    shutil.copytree(k8s.VENDORED_DIR, out)
    source = tmp_path / "source"
    shutil.copytree(k8s.VENDORED_DIR, source)
    (source / k8s.VENDORED_SCHEMAS[0]).unlink()
    # When it is vendored from
    with pytest.raises(k8s.SchemaDirError) as err:
        k8s.vendor_schemas(source, out)
    # Then the missing file is named and the vendored directory is untouched
    assert k8s.VENDORED_SCHEMAS[0] in str(err.value)
    assert _files(out) == _files(k8s.VENDORED_DIR)


def test_download_keeps_only_the_vendored_files_and_the_strict_conversions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the catalog's tarball (served from a file: URL) whose Argo Events schemas are loose
    prefix = f"CRDs-catalog-{k8s.CRDS_CATALOG_COMMIT}"
    loose = b'{"type": "object"}'
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        members = {**_files(k8s.VENDORED_DIR), "example.com/widget_v1.json": b"{}"}
        members.pop("PROVENANCE.md")
        for name in k8s.CONVERTED_SCHEMAS:
            members[name] = loose
        for name, data in members.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    tarball = tmp_path / "catalog.tar.gz"
    tarball.write_bytes(buffer.getvalue())
    cache = tmp_path / f"crds-catalog-{k8s.CRDS_CATALOG_COMMIT}"
    # When it is downloaded, and the vendored set rewritten from it as `make schemas` does
    k8s.download_catalog(tarball.as_uri(), cache)
    out = tmp_path / "out"
    shutil.copytree(k8s.VENDORED_DIR, out)
    monkeypatch.setattr(k8s, "catalog_source", lambda: cache)
    assert k8s.main(["vendor", "--out", str(out)]) == 0
    # Then only the vendored files came out of the tarball, and the strict conversions stayed
    assert sorted(_files(cache)) == sorted([*k8s.VENDORED_SCHEMAS, "LICENSE"])
    assert _files(out) == _files(k8s.VENDORED_DIR)


def test_schema_source_must_exist_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given ARGOSY_SCHEMA_SOURCE naming a missing directory, then an existing one
    monkeypatch.setenv(k8s.SCHEMA_SOURCE_ENV, str(tmp_path / "nowhere"))
    # When the catalog is looked up
    with pytest.raises(k8s.SchemaDirError) as err:
        k8s.catalog_source()
    monkeypatch.setenv(k8s.SCHEMA_SOURCE_ENV, str(tmp_path))
    # Then a missing one is an error naming the variable, an existing one is used as it is
    assert k8s.SCHEMA_SOURCE_ENV in str(err.value)
    assert k8s.catalog_source() == tmp_path
