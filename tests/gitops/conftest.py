"""Fixtures for promotion tests (defined in gitops_fixtures, shared with tests/registry)."""

from .gitops_fixtures import github_api, mlflow_client, pipeline, remote

__all__ = ["github_api", "mlflow_client", "pipeline", "remote"]
