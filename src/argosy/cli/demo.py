"""``argosy demo``: the whole loop on one machine (``make demo``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from argosy.cli.common import fail
from argosy.loop.demo import STEPS, DemoConfig, DemoError, run_demo

_PARAGRAPHS = (
    "Run the whole loop locally: train, promote, serve, detect drift, retrain, gate. No network.",
    "Synthesizes a baseline period from the data contract (contract.yaml, whatever data it "
    "describes) and runs the pipeline (`dvc repro`) in a clone of this repository's main whose "
    "origin is a bare repository in the demo directory; registers the model and pins it in "
    "staging (a commit on origin/main). `argosy promote --env production` pushes its branch (no "
    "GITHUB_TOKEN: no pull request), and the demo merges that branch locally, standing in for a "
    "reviewer's approval. Then it serves the model on 127.0.0.1 with a prediction log, replays a "
    "later, shifted period through it (V2 infer over HTTP, one tensor per feature), runs `argosy "
    "monitor` with that period's labels, adds the newly labelled period with `argosy retrain`, "
    "gates the challenger against the production champion and prints the production pull "
    "request body.",
    "Your own checkout is never modified; everything is written under --workdir (default: a new "
    "temporary directory, kept). About a minute on 2 cores with the defaults.",
)
DEMO_HELP = "\n\n".join(_PARAGRAPHS)


def demo_command(
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Directory for the run (must not hold an earlier run). Default: a new "
            "temporary directory, kept so the reports can be opened."
        ),
    ] = None,
    rows: Annotated[int, typer.Option(min=1, help="Rows of the baseline period.")] = 100_000,
    drift_rows: Annotated[
        int,
        typer.Option(min=1, help="Rows of the shifted period replayed through the server."),
    ] = 40_000,
    shift: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=1.0,
            help="How far the replayed period drifts from the baseline: 0.1 slightly, 1 the "
            "category mixes turned around, numbers up their range, booleans true twice as often.",
        ),
    ] = 0.5,
    summary: Annotated[
        Path | None, typer.Option(help="Also copy the summary Markdown to this path.")
    ] = None,
) -> None:
    """Run the demo (the full help is ``DEMO_HELP``)."""
    work = workdir or Path(tempfile.mkdtemp(prefix="argosy-demo-"))
    config = DemoConfig(workdir=work, baseline_rows=rows, drift_rows=drift_rows, shift=shift)

    began = time.monotonic()

    def progress(step: int, message: str) -> None:
        where = f"[{step:>2}/{STEPS}]" if step else " " * 7  # 0: a step still running
        typer.echo(f"{where} {time.monotonic() - began:>5.0f} s  {message}")

    typer.echo(f"demo directory: {work}")
    try:
        result = run_demo(config, progress)
    except DemoError as exc:
        fail(str(exc))
    text = result.summary.read_text() if result.summary else ""
    if summary is not None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(text)
    typer.echo("\n" + text)
