"""A fresh clone gets the data data.dvc pins: regenerated (the example) or pulled (your files)."""

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
    for name in ("params.yaml", "contract.yaml", "data.dvc", ".dvcignore"):
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


def _as_files_source(root: Path) -> None:
    contract = (root / "contract.yaml").read_text()
    (root / "contract.yaml").write_text(contract.replace("source: simulate", "source: files", 1))


def test_own_files_missing_without_a_remote_say_what_to_do(tmp_path: Path) -> None:
    # Given a fork's checkout (`source: files`) with data.dvc but no data/ and no DVC remote
    root = clone_like(tmp_path)
    _as_files_source(root)
    # When `argosy ensure-data` runs
    proc = ensure_data(root)
    # Then it fails with one message naming both ways out, and creates no data
    assert proc.returncode == 1
    assert "data/ is missing and `dvc pull data.dvc` could not fetch it" in proc.stderr
    assert "dvc add data" in proc.stderr
    assert "dvc remote add" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((root / "data").glob("*.parquet"))


def test_own_files_are_pulled_from_the_dvc_remote(tmp_path: Path) -> None:
    # Given a fork whose data was pushed to a directory remote, and a clone without data/
    (tmp_path / "first").mkdir()
    source = clone_like(tmp_path / "first")
    assert ensure_data(source).returncode == 0
    _as_files_source(source)
    remote = tmp_path / "remote"
    env = venv_env()
    for args in (["dvc", "remote", "add", "-d", "storage", str(remote)], ["dvc", "push", "-q"]):
        subprocess.run(args, cwd=source, check=True, env=env, capture_output=True)
    clone = tmp_path / "clone"
    shutil.copytree(source, clone, ignore=shutil.ignore_patterns("data", "cache"))
    # When `argosy ensure-data` runs there
    proc = ensure_data(clone)
    # Then the pinned version is pulled and DVC sees it up to date
    assert proc.returncode == 0, proc.stderr
    assert "pulled the pinned version" in proc.stdout
    status = subprocess.run(
        ["dvc", "status", "data.dvc"], cwd=clone, capture_output=True, text=True, env=env
    )
    assert "up to date" in status.stdout
