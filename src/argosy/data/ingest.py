"""Ingest a new batch of data: validate it, version it with DVC, commit ``data.dvc``.

The batch is checked with the same Great Expectations suite as the pipeline's data gate, before
anything is copied: on its own (so a bad batch is not diluted by the data already there), then
together with ``data/`` (so the committed version passes the pipeline's gate, e.g. no row id
twice). A rejected batch leaves ``data/``, the DVC cache and git as they were, with its report
written. An accepted batch becomes ``data/batch-<sha256 prefix>.parquet``
(ingesting the same bytes twice is a no-op), ``dvc add data`` re-pins the directory and one commit
records the new ``data.dvc``; training then follows through the push path.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from argosy.clikit import DEFAULT_CONTRACT, ContractOption, contract_or_exit, fail
from argosy.data.contract import Contract
from argosy.gitops.git import identity_args

log = logging.getLogger(__name__)

CREDENTIAL_HELPER = "!f() { echo username=$GIT_USERNAME; echo password=$GIT_PASSWORD; }; f"
"""Reads push credentials from the environment (Secret references in the cluster)."""


class IngestError(RuntimeError):
    """The batch was rejected or could not be versioned; nothing was committed."""


@dataclass(frozen=True)
class IngestResult:
    """What ingestion did."""

    path: Path
    rows: int
    commit: str | None  # None: the same batch was already ingested


def _run(repo: Path, *args: str) -> str:
    result = subprocess.run(list(args), cwd=repo, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise IngestError(f"`{' '.join(args)}` failed: {result.stderr.strip() or result.stdout}")
    return result.stdout.strip()


def ingest_batch(
    repo: Path,
    batch: Path,
    contract: Contract,
    reports: Path,
    *,
    push: bool = False,
    branch: str = "main",
) -> IngestResult:
    """Validate ``batch``, add it to ``repo/data`` under DVC and commit ``data.dvc``.

    Args:
        repo: A git + DVC checkout whose ``data/`` is tracked by ``data.dvc``.
        batch: The new Parquet file.
        contract: The data contract the batch must meet (the pipeline's data gate).
        reports: Where the batch's validation report is written.
        push: Also ``dvc push`` the data and ``git push`` the commit to ``origin``.
        branch: Branch to push to.

    Returns:
        The stored path, the batch's row count and the new commit (None when already ingested).

    Raises:
        IngestError: Validation failed (the message names the failing expectations and the
            report) or DVC/git failed; ``data/`` and ``data.dvc`` are restored in that case.
    """
    from argosy.validation.suite import DataValidationError, validate_dir

    digest = hashlib.sha256(batch.read_bytes()).hexdigest()
    target = repo / "data" / f"batch-{digest[:16]}.parquet"
    with tempfile.TemporaryDirectory() as staging:
        alone, combined = Path(staging) / "batch", Path(staging) / "combined"
        alone.mkdir()
        shutil.copy(batch, alone / "batch.parquet")
        try:
            outcome = validate_dir(alone, contract, reports)
        except DataValidationError as exc:
            raise IngestError(
                f"batch {batch} rejected, nothing committed: {exc}\nreport: {reports}"
            ) from exc
        if target.exists():
            log.info("%s is already ingested as %s", batch, target)
            return IngestResult(target, outcome.rows, None)
        # The version to be committed must pass the pipeline's own data gate too: a batch that is
        # fine alone can still repeat row ids already in data/.
        combined.mkdir()
        for existing in sorted((repo / "data").glob("*.parquet")):
            (combined / existing.name).symlink_to(existing.resolve())
        (combined / target.name).symlink_to(alone / "batch.parquet")
        try:
            validate_dir(combined, contract, reports / "with-data")
        except DataValidationError as exc:
            raise IngestError(
                f"batch {batch} rejected, nothing committed: together with data/, {exc}\n"
                f"report: {reports / 'with-data'}"
            ) from exc
    shutil.copy(batch, target)
    try:
        _run(repo, "dvc", "add", "--quiet", "data")
        _run(repo, "git", "add", "data.dvc")
        _run(
            repo,
            "git",
            *identity_args(repo),
            "commit",
            "--quiet",
            "-m",
            f"Ingest data batch {digest[:16]} ({outcome.rows} rows)",
            "--",
            "data.dvc",
        )
    except IngestError:
        target.unlink(missing_ok=True)
        subprocess.run(["git", "checkout", "--", "data.dvc"], cwd=repo, check=False)
        raise
    commit = _run(repo, "git", "rev-parse", "HEAD")
    if push:
        _run(repo, "dvc", "push", "--quiet", "data.dvc")
        _run(
            repo,
            "git",
            "-c",
            f"credential.helper={CREDENTIAL_HELPER}",
            "push",
            "origin",
            f"HEAD:{branch}",
        )
    return IngestResult(target, outcome.rows, commit)


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

    A rejected batch changes nothing (exit 1, report written). Pushing the commit starts
    training through the push Sensor, with the data version pinned in that commit.
    """
    declared = contract_or_exit(contract)
    repo = contract.resolve().parent
    try:
        if dvc_remote:
            from argosy.workflows.runner import TaskError, configure_remote

            try:
                configure_remote(repo, dvc_remote, dvc_endpoint)
            except TaskError as exc:
                raise IngestError(str(exc)) from exc
        result = ingest_batch(repo, batch, declared, reports, push=push, branch=branch)
    except IngestError as exc:
        fail(str(exc))
    if result.commit is None:
        typer.echo(f"{batch}: already ingested as {result.path}")
    else:
        typer.echo(f"ingested {result.rows} rows as {result.path}; commit {result.commit[:12]}")
