"""Fixtures of the workflow tests: the compiled documents and a scratch copy of the sources."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "workflows" / "generated"


def load_generated() -> dict[str, dict[str, Any]]:
    """Every committed generated document, by file name (the kustomization excluded)."""
    return {
        path.name: yaml.safe_load(path.read_text())
        for path in sorted(GENERATED.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def by_kind(kind: str, name: str) -> dict[str, Any]:
    """The committed generated document of that kind and name."""
    return load_generated()[f"{kind.lower()}.{name}.yaml"]


def templates(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A Workflow(Template)'s or CronWorkflow's templates by name."""
    spec = doc["spec"].get("workflowSpec", doc["spec"])
    return {t["name"]: t for t in spec["templates"]}


def copy_sources(root: Path) -> Path:
    """Copy the inputs of `make workflows` (dvc.yaml, params, contract, workflows/*.py) to root."""
    (root / "workflows").mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "contract.yaml"):
        shutil.copy(REPO / name, root / name)
    for module in (REPO / "workflows").glob("*.py"):
        shutil.copy(module, root / "workflows" / module.name)
    return root


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    """A scratch copy of the inputs of `make workflows` (see :func:`copy_sources`)."""
    return copy_sources(tmp_path / "repo")
