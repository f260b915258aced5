"""CronWorkflow `argosy-drift-monitor`: drift checks on a schedule, training when drift holds."""

from pathlib import Path

from argosy.workflows.codegen import model_name, workflow_settings
from argosy.workflows.monitoring import drift_monitor


def build(root: Path) -> list:
    """The drift-monitor CronWorkflow of the repository at ``root`` (its contract's model)."""
    return [drift_monitor(workflow_settings(root), model_name(root))]
