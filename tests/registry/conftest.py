"""Registry tests share the MLflow fixtures of tests/gitops (real MLflow, contract-shaped runs)."""

from ..gitops.gitops_fixtures import mlflow_client, pipeline

__all__ = ["mlflow_client", "pipeline"]
