"""Fixtures shared by the pipeline tests: the repository root, params and small data sets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from argosy.config import Params, load_params
from argosy.data.contract import Contract, load_contract
from argosy.examples.fraud.simulate import SimulationSpec, simulate

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the whole-file end-to-end tests (module-level ``slow`` mark) first, in file order.

    `make test` hands whole files to two workers in collection order (pytest-xdist, ``--dist
    loadfile --no-loadscope-reorder``); those files take minutes each, so starting them first keeps
    one of them from being the last thing a worker does while the other waits.
    """
    items.sort(key=lambda item: item.getparent(pytest.Module).get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository under test."""
    return REPO


@pytest.fixture(scope="session")
def params() -> Params:
    """The committed params.yaml."""
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def contract() -> Contract:
    """The committed contract.yaml (the shipped example's)."""
    return load_contract(REPO / "contract.yaml")


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (SQLite + served artifacts), stopped afterwards."""
    port = _free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            *(str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port)),
            *("--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"),
            *("--artifacts-destination", str(tmp_path / "server-artifacts")),
            *("--workers", "1"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not become healthy (exit {proc.poll()})")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
