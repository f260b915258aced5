"""Registry tests share the MLflow fixtures of tests/gitops (real MLflow, contract-shaped runs)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gitops"))

from gitops_fixtures import mlflow_client, pipeline

__all__ = ["mlflow_client", "pipeline"]
