"""The ``argosy`` command line: one module per command group, every command a thin wrapper.

========================  =====================================================================
module                    commands
========================  =====================================================================
:mod:`.pipeline`          simulate, ensure-data, validate, prepare, train, evaluate, gate,
                          summary, serve (the DVC stages and their reports)
:mod:`.data`              init (draft a contract from a file), ingest (add a batch)
:mod:`.gitops`            register, promote (and promote verify), rollback, registry sync
:mod:`.monitoring`        monitor, retrain
:mod:`.workflows`         workflows generate | stage | after | report-status | submit
:mod:`.images`            pin-images
:mod:`.demo`              demo
========================  =====================================================================

A command parses its options, loads params.yaml and the contract through :mod:`.common` (exit 2
naming each bad key) and calls the module that owns the work; every failure it expects leaves
through :func:`argosy.cli.common.fail` as one ``error: ...`` line, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from argosy.cli import data, demo, gitops, images, monitoring, pipeline, workflows

app = typer.Typer(
    name="argosy",
    help="Argosy: a GitOps MLOps loop. Stages run under `dvc repro` and in Argo Workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("argosy").setLevel(logging.DEBUG if verbose else logging.INFO)


# The pipeline's stages (dvc.yaml runs these) and their reports.
app.command()(pipeline.simulate)
app.command("ensure-data")(pipeline.ensure_data)
app.command()(pipeline.validate)
app.command()(pipeline.prepare)
app.command()(pipeline.train)
app.command()(pipeline.evaluate)
app.command()(pipeline.gate)
app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)(pipeline.serve)
app.command()(pipeline.summary)

# Your own data: draft a data contract from a file; add a batch.
app.command("init")(data.init_command)
app.command("ingest")(data.ingest_command)

# GitOps: registration, promotion through git, verification, rollback, registry sync.
app.command()(gitops.register)
app.add_typer(gitops.promote_app, name="promote")
app.command()(gitops.rollback)
app.add_typer(gitops.registry_app, name="registry")

# Argo workflows: codegen, in-pod task runner, commit status, submission; image digests.
app.add_typer(workflows.workflows_app, name="workflows")
app.command("pin-images")(images.pin_images_command)

# Drift monitoring and the local retraining trigger.
app.command(help=monitoring.MONITOR_HELP)(monitoring.monitor)
app.command()(monitoring.retrain)

# The whole loop on one machine (make demo).
app.command("demo", help=demo.DEMO_HELP)(demo.demo_command)


def main() -> None:
    """Entry point of the ``argosy`` script."""
    app()
