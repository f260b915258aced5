"""Fixtures shared by the pipeline tests: the repository root, params and small data sets."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from argosy.config import Params, load_params
from argosy.data.simulate import SimulationSpec, simulate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository under test."""
    return REPO


@pytest.fixture(scope="session")
def params() -> Params:
    """The committed params.yaml."""
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    """20k baseline transactions (read-only: copy before mutating)."""
    return simulate(SimulationSpec(rows=20_000, seed=11, start=date(2026, 1, 1), days=30))


@pytest.fixture
def isolated_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLflow at an SQLite store inside tmp_path."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def venv_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: this venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env.update(extra)
    return env
