"""A fresh clone regenerates data/ from the pinned seed, and it matches the hash data.dvc pins."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO, venv_env

pytestmark = pytest.mark.slow


def clone_like(tmp_path: Path) -> Path:
    root = tmp_path / "clone"
    root.mkdir()
    for name in ("params.yaml", "data.dvc", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def ensure_data(root: Path) -> subprocess.CompletedProcess[str]:
    """Run `argosy ensure-data` (the first step of `make run`) in ``root``."""
    return subprocess.run(
        ["argosy", "ensure-data"],
        cwd=root,
        capture_output=True,
        text=True,
        env=venv_env(),
        timeout=600,
    )


def test_regenerated_data_matches_data_dvc(tmp_path: Path) -> None:
    # Given a checkout with data.dvc but no data/ and no DVC cache
    root = clone_like(tmp_path)
    # When `argosy ensure-data` regenerates it from params.yaml's seed
    proc = ensure_data(root)
    # Then the bytes hash to what data.dvc pins
    assert proc.returncode == 0, proc.stderr
    assert "matches data.dvc" in proc.stdout
    status = subprocess.run(
        ["dvc", "status", "data.dvc"], cwd=root, capture_output=True, text=True, env=venv_env()
    )
    assert "up to date" in status.stdout


def test_different_seed_is_refused_and_removed(tmp_path: Path) -> None:
    # Given params whose seed no longer matches the pin
    root = clone_like(tmp_path)
    params = (root / "params.yaml").read_text().replace("seed: 20260101", "seed: 7", 1)
    (root / "params.yaml").write_text(params)
    proc = ensure_data(root)
    # Then it fails, says why, and leaves no unpinned data behind
    assert proc.returncode == 1
    assert "regenerated data hashes to" in proc.stderr
    assert "but data.dvc pins" in proc.stderr
    assert not (root / "data").exists()
