"""``argosy pin-images``: record pushed image digests where the deployments read them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from argosy.cli.common import fail
from argosy.images import PinError, pin_images


def pin_images_command(
    serve: Annotated[
        str | None, typer.Option(help="Digest of the pushed `serve` image (sha256:...).")
    ] = None,
    pipeline: Annotated[
        str | None, typer.Option(help="Digest of the pushed `pipeline` image (sha256:...).")
    ] = None,
    root: Annotated[Path, typer.Option(help="Repository root.")] = Path("."),
) -> None:
    """Record image digests: serve in manifests/base, pipeline in params.yaml workflow.image.

    Run `make workflows` afterwards (`make pin-images` does) so the WorkflowTemplates follow.
    """
    if serve is None and pipeline is None:
        fail("give --serve and/or --pipeline", 2)
    try:
        changed = pin_images(root, serve, pipeline)
    except PinError as exc:
        fail(str(exc), 2)
    typer.echo("updated: " + (", ".join(str(p) for p in changed) or "nothing (already pinned)"))
