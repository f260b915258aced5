"""WorkflowTemplate `argosy-training`: the stages of dvc.yaml as Argo tasks, then promotion."""

from pathlib import Path

from argosy.workflows.codegen import train_settings, workflow_settings
from argosy.workflows.dag import load_pipeline
from argosy.workflows.training import training_template


def build(root: Path) -> list:
    """The training WorkflowTemplate of the repository at ``root``."""
    return [
        training_template(
            load_pipeline(root / "dvc.yaml"), workflow_settings(root), train_settings(root)
        )
    ]
