"""Where MLflow lives, and the provenance (data hash, git commit) every run records.

Nothing here touches MLflow or the environment at import: callers ask for the URI when they need it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else an SQLite store in the repository root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{((root or Path.cwd()) / DEFAULT_DB).resolve()}"


def artifact_location(root: Path | None = None) -> str | None:
    """Local artifact root for the embedded store; None lets a tracking server choose."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return ((root or Path.cwd()) / DEFAULT_ARTIFACTS).resolve().as_uri()


def ensure_experiment(name: str, root: Path | None = None) -> str:
    """Return the id of experiment ``name``, creating it (with a local artifact root) if needed."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(root))


def data_hash(root: Path | None = None) -> str:
    """The DVC hash that ``data.dvc`` pins for ``data/`` ("untracked" without a pointer file)."""
    pointer = (root or Path.cwd()) / "data.dvc"
    if not pointer.exists():
        return "untracked"
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "untracked"))


def git_commit(root: Path | None = None) -> tuple[str, bool]:
    """The HEAD commit and whether the tree differs from it ("unknown", False outside git)."""
    cwd = root or Path.cwd()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return head, bool(dirty)
