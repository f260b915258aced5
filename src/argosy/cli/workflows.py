"""``argosy workflows ...``: generate the YAML, run a task in a pod, report status, submit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from argosy.cli.common import fail

workflows_app = typer.Typer(
    help="Argo workflows generated from dvc.yaml: compile them, run tasks inside their pods, "
    "report a commit status, submit a training run.",
    no_args_is_help=True,
)

RemoteUrl = Annotated[
    str, typer.Option("--dvc-remote", help="DVC remote URL (s3://bucket/path, or a directory).")
]
RemoteEndpoint = Annotated[
    str, typer.Option("--dvc-endpoint", help="S3 endpoint URL of the remote; empty for AWS.")
]
RepoDir = Annotated[Path, typer.Option("--repo", help="The checkout to run in.")]


@workflows_app.command()
def generate(
    root: Annotated[Path, typer.Option(help="Repository root holding workflows/*.py.")] = Path("."),
) -> None:
    """Compile workflows/*.py into workflows/generated/ (what `make workflows` runs)."""
    from argosy.config import ConfigError
    from argosy.workflows.codegen import CodegenError
    from argosy.workflows.codegen import generate as run_generate
    from argosy.workflows.dag import PipelineError

    try:
        written = run_generate(root)
    except (CodegenError, ConfigError, PipelineError) as exc:
        fail(str(exc), 2)
    typer.echo(f"wrote {len(written)} files to {root / 'workflows' / 'generated'}")


@workflows_app.command()
def stage(
    name: Annotated[str, typer.Argument(help="The dvc.yaml stage to reproduce.")],
    dvc_remote: RemoteUrl,
    dvc_endpoint: RemoteEndpoint = "",
    export: Annotated[
        list[str] | None,
        typer.Option(help="NAME=FILE:KEY: write FILE's JSON KEY to OUTPUTS/NAME (repeatable)."),
    ] = None,
    outputs: Annotated[
        Path | None, typer.Option(help="Directory Argo reads output parameters from.")
    ] = None,
    repo: RepoDir = Path("."),
) -> None:
    """Run one pipeline stage in its pod: pull inputs and run-cache, reproduce, push outputs.

    An unchanged stage is restored from the run-cache instead of rerun, across workflows too.
    """
    from argosy.workflows.runner import OUTPUTS_DIR, Export, TaskError, run_stage

    try:
        exports = [Export.parse(e) for e in export or []]
    except ValueError as exc:
        fail(str(exc), 2)
    try:
        values = run_stage(
            repo, name, dvc_remote, dvc_endpoint, exports, outputs or Path(OUTPUTS_DIR)
        )
    except TaskError as exc:
        fail(str(exc))
    for key, value in values.items():
        typer.echo(f"output {key}={value}")


@workflows_app.command(context_settings={"allow_extra_args": True})
def after(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The stage whose outputs the command reads.")],
    dvc_remote: RemoteUrl,
    dvc_endpoint: RemoteEndpoint = "",
    repo: RepoDir = Path("."),
) -> None:
    """Restore a stage's outputs from the DVC remote, then run the command given after `--`.

    Example: argosy workflows after gate --dvc-remote s3://b/p -- argosy register
    """
    from argosy.workflows.runner import TaskError, run_after

    try:
        code = run_after(repo, name, dvc_remote, dvc_endpoint, ctx.args)
    except TaskError as exc:
        fail(str(exc))
    raise typer.Exit(code)


@workflows_app.command("report-status")
def report_status(
    repository: Annotated[str, typer.Option(help="OWNER/NAME on GitHub.")],
    revision: Annotated[str, typer.Option(help="The commit the workflow trained.")],
    status: Annotated[str, typer.Option(help="Argo's {{workflow.status}}.")],
    context: Annotated[str, typer.Option(help="Status context shown on the commit.")] = (
        "argosy/training"
    ),
    api_url: Annotated[str, typer.Option(help="GitHub REST API base URL.")] = (
        "https://api.github.com"
    ),
    target_url: Annotated[
        str | None, typer.Option(help="Link from the status (e.g. the Argo UI).")
    ] = None,
) -> None:
    """Report the workflow's outcome as a GitHub commit status (token: $GITHUB_TOKEN)."""
    from argosy.workflows.status import StatusError, commit_status_request, post_commit_status

    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        fail("GITHUB_TOKEN is not set (the template reads it from a Secret)", 2)
    try:
        request = commit_status_request(
            api_url, repository, revision, status, token, context, target_url
        )
        state = post_commit_status(request)
    except ValueError as exc:
        fail(str(exc), 2)
    except StatusError as exc:
        fail(str(exc))
    typer.echo(f"{repository}@{revision[:12]}: {context} = {state}")


@workflows_app.command()
def submit(
    revision: Annotated[str, typer.Option(help="Git commit to train from.")],
    branch: Annotated[
        str, typer.Option(help="Branch of the commit (one run per branch).")
    ] = "main",
    server: Annotated[
        str | None, typer.Option(help="Argo Server URL. Default: $ARGO_SERVER.")
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(help="Namespace of the template. Default: params.yaml workflow.namespace."),
    ] = None,
    insecure_skip_verify: Annotated[
        bool, typer.Option(help="Do not verify the server's TLS certificate.")
    ] = False,
    params: Annotated[Path, typer.Option(help="params.yaml with the workflow section.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Submit argosy-training at a commit through the Argo Server API (token: $ARGO_TOKEN)."""
    from argosy.config import ConfigError
    from argosy.workflows.codegen import CodegenError, workflow_settings
    from argosy.workflows.submit import SubmitError, submit_training

    server = server or os.environ.get("ARGO_SERVER")
    if not server:
        fail("no Argo Server: pass --server or set ARGO_SERVER", 2)
    if namespace is None:
        try:
            namespace = workflow_settings(params.parent).namespace
        except (ConfigError, CodegenError) as exc:
            fail(str(exc), 2)
    try:
        created = submit_training(
            server,
            namespace,
            os.environ.get("ARGO_TOKEN"),
            revision,
            branch,
            verify_ssl=not insecure_skip_verify,
        )
    except SubmitError as exc:
        fail(str(exc))
    typer.echo(f"submitted {created.namespace}/{created.name} at {created.revision}")
