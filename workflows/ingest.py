"""WorkflowTemplate `argosy-ingest`, with the data EventSource and the Sensor that submits it."""

from pathlib import Path

from argosy.workflows.codegen import workflow_settings
from argosy.workflows.events import data_event_source, data_sensor
from argosy.workflows.ingest import ingest_template


def build(root: Path) -> list:
    """The ingest template, the new-data EventSource (source chosen in params) and its Sensor."""
    settings = workflow_settings(root)
    return [ingest_template(settings), data_event_source(settings), data_sensor(settings)]
