"""``argosy init`` (draft a data contract from a file) and ``argosy ingest`` (add a batch)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from argosy.cli.common import DEFAULT_CONTRACT, ContractOption, contract_or_exit, fail
from argosy.data.profile import InitError, init_contract
from argosy.loop.ingest import IngestError, IngestInterrupted, check_batch_file, ingest_batch


def init_command(
    data: Annotated[Path, typer.Option("--data", help="The Parquet or CSV file to profile.")],
    label: Annotated[str, typer.Option("--label", help="The binary label column.")],
    id_column: Annotated[
        str | None,
        typer.Option("--id", help="The row-id column (unique; late labels are joined on it)."),
    ] = None,
    time_column: Annotated[
        str | None, typer.Option("--time", help="The event-time column (a time-ordered split).")
    ] = None,
    positive: Annotated[
        str | None,
        typer.Option(
            "--positive", help="The positive label value (default: 1/true, else the minority)."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The model's name (default: from the file's name).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the draft.")
    ] = DEFAULT_CONTRACT,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out when it exists.")] = False,
) -> None:
    """Profile a Parquet or CSV file and write a draft data contract, commented for review."""
    try:
        draft = init_contract(
            data,
            label,
            out=out,
            force=force,
            id_column=id_column,
            time_column=time_column,
            positive=positive,
            name=name,
        )
    except InitError as exc:
        fail(str(exc), code=2)
    contract = draft.contract
    nullable = sum(f.nullable for f in contract.features.values())
    typer.echo(
        f"wrote {out}: a draft contract for {data} ({draft.profile.rows:,} rows): "
        f"{len(contract.features)} features ({nullable} nullable), "
        f"{len(contract.other_columns)} other columns, label {contract.label.column!r} positive "
        f"{contract.label.positive!r}. Review its FORK: lines, then `make run`."
    )
    repo = out.resolve().parent
    if out.resolve() == (repo / DEFAULT_CONTRACT).resolve() and (repo / "manifests").is_dir():
        from argosy.gitops.promote import name_unpinned

        for path in name_unpinned(repo, contract.name):
            typer.echo(f"wrote {path}: no model pinned yet, served name {contract.name}")


def ingest_command(
    batch: Annotated[Path, typer.Option(help="The new batch: one Parquet file of raw data.")],
    reports: Annotated[
        Path, typer.Option(help="Where the batch's validation report is written.")
    ] = Path("reports/ingest"),
    push: Annotated[
        bool, typer.Option(help="dvc push the data and git push the commit to origin.")
    ] = False,
    branch: Annotated[str, typer.Option(help="Branch to push the commit to.")] = "main",
    dvc_remote: Annotated[
        str | None, typer.Option(help="DVC remote URL for this checkout (.dvc/config.local).")
    ] = None,
    dvc_endpoint: Annotated[str, typer.Option(help="S3 endpoint of that remote.")] = "",
    contract: ContractOption = DEFAULT_CONTRACT,
) -> None:
    """Validate a new batch; if it passes, add it to data/ under DVC and commit data.dvc.

    A rejected batch changes nothing (exit 1, report written); a batch whose Parquet footer
    declares more rows than the contract's rows.max, or other columns, is refused before any row
    is read. An interrupted run is rolled back (on SIGTERM at once, after a kill by the next
    run), so running it again completes the ingest. Pushing the commit starts training through
    the push Sensor, with the data version pinned in that commit.
    """
    declared = contract_or_exit(contract)
    repo = contract.resolve().parent
    try:
        check_batch_file(batch)
        if dvc_remote:
            from argosy.workflows.runner import TaskError, configure_remote

            try:
                configure_remote(repo, dvc_remote, dvc_endpoint)
            except TaskError as exc:
                raise IngestError(str(exc)) from exc
        result = ingest_batch(repo, batch, declared, reports, push=push, branch=branch)
    except IngestInterrupted as exc:
        fail(str(exc), code=128 + signal.SIGTERM)
    except IngestError as exc:
        fail(str(exc))
    if result.commit is None:
        typer.echo(f"{batch}: already ingested as {result.path}")
    else:
        typer.echo(f"ingested {result.rows} rows as {result.path}; commit {result.commit[:12]}")
