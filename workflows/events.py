"""EventSource `argosy-github` and Sensor `argosy-train-on-push`: train the pushed commit."""

from pathlib import Path

from argosy.workflows.codegen import workflow_settings
from argosy.workflows.events import github_event_source, push_sensor


def build(root: Path) -> list:
    """The GitHub push EventSource and its training Sensor."""
    settings = workflow_settings(root)
    return [github_event_source(settings), push_sensor(settings)]
