"""The locked environment: uv.lock matches pyproject.toml, and every pipeline dependency imports.

Evidently 0.7 fails to import beside pandas 3 (it declares no upper bound), so pandas is held at
2.x; importing everything in one interpreter is what catches such a clash.
"""

from __future__ import annotations

import subprocess
import sys

from ..conftest import REPO


def test_lock_file_is_current() -> None:
    # Given the uv that `make` bootstraps into .tools/ / When it re-checks the lock offline
    uv = REPO / ".tools" / "bin" / "uv"
    assert uv.exists(), f"{uv} is missing: run `make venv` (make test does it first)"
    proc = subprocess.run(
        [str(uv), "lock", "--check", "--offline", "--python", sys.executable],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then uv.lock is exactly what pyproject.toml resolves to
    assert proc.returncode == 0, proc.stderr


def test_every_pipeline_dependency_imports_together() -> None:
    code = (
        "import pandas, evidently, great_expectations, mlflow, dvc.api, xgboost, onnx, "
        "onnxruntime, onnxmltools, hera, github, sklearn, scipy, typer, pydantic\n"
        "from evidently import Report\n"
        "from evidently.presets import DataDriftPreset\n"
        "assert pandas.__version__.startswith('2.'), pandas.__version__\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
