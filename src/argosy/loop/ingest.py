"""Ingest a new batch of data: validate it, version it with DVC, commit ``data.dvc``.

The batch's Parquet footer is checked first (row count against the contract's ``rows.max``, alone
and together with ``data/``; column names against the contract; each row group's decoded size),
so a small file that decodes to far too many rows is refused before a single row is read. Then the
batch is read one row group at a time (bounded memory) and every per-row rule of the contract is
checked there: nulls, ranges, integral values, booleans, categories, label values. Only a batch
that passes both is checked with the same Great Expectations suite as the pipeline's data gate,
before anything is copied: on its own (so a bad batch is not diluted by the data already there),
then together with ``data/`` (so the committed version passes the pipeline's gate, e.g. no row id
twice). The suite runs partition by partition (:mod:`argosy.validation.partitioned`), merging
the data-set-wide checks (unique ids across files, row count, label rate); the footer check bounds
the rows by ``rows.max`` before any is read.

A rejected batch leaves ``data/``, the DVC cache and git as they were, with its report written.
An accepted batch becomes ``data/batch-<sha256 prefix>.parquet`` (ingesting the same bytes twice
is a no-op), ``dvc add data`` re-pins the directory and one commit records the new ``data.dvc``;
training then follows through the push path.

Versioning is journalled (``.dvc/tmp/argosy-ingest.json``, written before ``data/`` changes): a
failure, Ctrl-C or SIGTERM rolls ``data/``, ``data.dvc`` and the DVC cache back on the spot, and
a run killed outright is rolled back by the next run, which then ingests its batch in full.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argosy import proc
from argosy.data.contract import Contract
from argosy.files import write_atomic
from argosy.hashing import file_sha256
from argosy.proc import CREDENTIAL_HELPER, identity_args

log = logging.getLogger(__name__)

JOURNAL = Path(".dvc") / "tmp" / "argosy-ingest.json"
"""An ingest in progress (inside DVC's own git-ignored tmp directory)."""

MAX_ROW_GROUP_BYTES = 256 * 1024 * 1024
"""Largest decoded row group the row-group check reads (the footer declares each one's size)."""
MAX_PROBLEMS = 10


class IngestError(RuntimeError):
    """The batch was rejected or could not be versioned; nothing was committed."""


class IngestInterrupted(IngestError):
    """SIGTERM arrived while the batch was being versioned; everything was rolled back."""


@dataclass(frozen=True)
class IngestResult:
    """What ingestion did."""

    path: Path
    rows: int
    commit: str | None  # None: the same batch was already ingested


def _run(repo: Path, *args: str) -> str:
    try:
        return proc.run(args, repo).strip()
    except proc.CommandError as exc:
        raise IngestError(str(exc)) from exc


def check_batch_file(batch: Path) -> None:
    """Refuse a ``--batch`` that is not a regular file, with a one-line reason.

    Raises:
        IngestError: It does not exist or is a directory (or another non-file).
    """
    if batch.is_dir():
        raise IngestError(f"--batch {batch} is a directory; give one Parquet file")
    if not batch.exists():
        raise IngestError(f"--batch {batch}: no such file")
    if not batch.is_file():
        raise IngestError(f"--batch {batch} is not a regular file")


def _footer(path: Path) -> tuple[int, list[str]]:
    """Row count and data columns from a Parquet footer (nothing else is read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as parquet:
            schema = parquet.schema_arrow
            rows = parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{path} is not a readable Parquet file ({exc}); nothing read") from exc
    pandas = schema.pandas_metadata or {}
    index = {c for c in pandas.get("index_columns", []) if isinstance(c, str)}
    return rows, [name for name in schema.names if name not in index]


def check_footer(batch: Path, contract: Contract, data_dir: Path) -> int:
    """Check the batch's footer against the contract before any row is read.

    Args:
        batch: The new Parquet file.
        contract: Its ``rows.max`` bounds the batch and the batch with ``data/``; its raw
            columns are the exact column set.
        data_dir: The data already versioned (their footers give their row counts).

    Returns:
        The batch's row count.

    Raises:
        IngestError: Too many rows, or the wrong columns; the message names each problem.
    """
    rows, columns = _footer(batch)
    limit = contract.rows.max
    problems = []
    if rows > limit:
        problems.append(f"its footer declares {rows} rows, more than rows.max={limit}")
    else:
        existing = sum(_footer(path)[0] for path in sorted(data_dir.glob("*.parquet")))
        if rows + existing > limit:
            problems.append(
                f"together with data/ ({existing} rows) its {rows} rows exceed rows.max={limit}"
            )
    expected = set(contract.raw_columns)
    missing = [c for c in contract.raw_columns if c not in set(columns)]
    extra = [c for c in columns if c not in expected]
    if missing:
        problems.append(f"columns missing: {', '.join(missing)}")
    if extra:
        problems.append(f"columns not in the contract: {', '.join(extra)}")
    if problems:
        raise IngestError(
            f"batch {batch} refused before reading any rows, nothing committed: "
            + "; ".join(problems)
            + " [contract.yaml rows, columns]"
        )
    return rows


def _column_problems(table, contract: Contract) -> list[str]:
    """The contract's per-row rules broken in one row group (an Arrow table), one line each."""
    import pyarrow as pa
    import pyarrow.compute as pc

    problems = []

    def count(mask) -> int:
        return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)

    for name in contract.raw_columns:
        if name not in table.column_names or name in contract.other_columns:
            continue
        column = table.column(name)
        feature = contract.features.get(name)
        floating = pa.types.is_floating(column.type)
        nulls = column.null_count + (count(pc.is_nan(column)) if floating else 0)
        nullable = feature is not None and feature.nullable
        if nulls and not nullable:
            problems.append(f"{name}: {nulls} null values (not nullable)")
        if name == contract.label.column:
            allowed = [contract.label.positive, contract.label.negative]
            labels = pc.cast(column, pa.int64()) if pa.types.is_boolean(column.type) else column
            try:
                inside = count(pc.is_in(labels, value_set=pa.array(allowed)))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                inside = None  # another type than the label's: the suite's type check names it
            outside = None if inside is None else len(column) - column.null_count - inside
            if outside:
                problems.append(f"{name}: {outside} values other than the label's {allowed}")
        if feature is None:
            continue
        numeric = pa.types.is_integer(column.type) or floating or pa.types.is_boolean(column.type)
        if feature.type == "categorical":
            if not (
                pa.types.is_string(column.type)
                or pa.types.is_large_string(column.type)
                or pa.types.is_dictionary(column.type)
            ):
                problems.append(f"{name}: type {column.type}, expected strings (categorical)")
            elif feature.unseen == "reject":
                values = (
                    pc.cast(column, pa.string()) if pa.types.is_dictionary(column.type) else column
                )
                known = count(pc.is_in(values, value_set=pa.array(feature.values or [])))
                unseen = len(column) - column.null_count - known
                if unseen:
                    problems.append(f"{name}: {unseen} values not in {feature.values}")
            continue
        if not numeric:
            problems.append(f"{name}: type {column.type}, expected a number ({feature.type})")
            continue
        values = pc.cast(column, pa.float64())
        if feature.type == "boolean":
            bad = count(pc.and_(pc.not_equal(values, 0.0), pc.not_equal(values, 1.0)))
            if bad:
                problems.append(f"{name}: {bad} values that are not 0/1 (boolean)")
            continue
        if feature.type == "integer" and floating:
            fractional = count(pc.not_equal(values, pc.floor(values)))
            if fractional:
                problems.append(f"{name}: {fractional} values that are not integers")
        low, high = feature.min, feature.max
        below = count(pc.less(values, low)) if low is not None else 0
        above = count(pc.greater(values, high)) if high is not None else 0
        if below or above:
            problems.append(f"{name}: {below + above} values outside [{low}, {high}]")
    return problems


def check_row_groups(
    batch: Path, contract: Contract, max_group_bytes: int = MAX_ROW_GROUP_BYTES
) -> None:
    """Check the contract's per-row rules one row group at a time (never the whole file).

    Each row group's decoded size comes from the footer and is refused above
    ``max_group_bytes`` before it is read, so memory stays bounded by one row group.

    Args:
        batch: The Parquet file (its footer already checked by :func:`check_footer`).
        contract: The data contract.
        max_group_bytes: Largest decoded row group read.

    Raises:
        IngestError: A row group is too large or breaks a rule; the message names the row group,
            the column and how many values.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    problems: list[str] = []
    columns = [c for c in contract.raw_columns if c not in contract.other_columns]
    try:
        with pq.ParquetFile(batch) as parquet:
            for index in range(parquet.metadata.num_row_groups):
                size = parquet.metadata.row_group(index).total_byte_size
                if size > max_group_bytes:
                    problems.append(
                        f"row group {index}: {size} bytes decoded, more than {max_group_bytes}; "
                        "write the file with smaller row groups"
                    )
                    break
                table = parquet.read_row_group(index, columns=columns)
                problems += [f"row group {index}: {p}" for p in _column_problems(table, contract)]
                if len(problems) >= MAX_PROBLEMS:
                    break
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(
            f"{batch}: cannot read its row groups ({exc}); nothing committed"
        ) from exc
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = f"; and more (first {MAX_PROBLEMS} shown)" if len(problems) > MAX_PROBLEMS else ""
        raise IngestError(
            f"batch {batch} rejected row group by row group, nothing committed: "
            + "; ".join(shown)
            + more
            + " [contract.yaml features, label]"
        )


# --- the journal: undo an interrupted ingest -------------------------------------------------


def _cache_dir(repo: Path) -> Path:
    return Path(_run(repo, "dvc", "cache", "dir"))


def _cache_files(cache: Path) -> set[str]:
    if not cache.is_dir():
        return set()
    return {str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()}


def _write_journal(repo: Path, entry: dict[str, object]) -> None:
    path = repo / JOURNAL
    write_atomic(path, json.dumps(entry))


def _undo(repo: Path, entry: dict[str, object]) -> None:
    """Put ``data/``, ``data.dvc`` and the DVC cache back as the journal found them."""
    (repo / "data" / str(entry["target"])).unlink(missing_ok=True)
    pointer = repo / "data.dvc"
    if entry.get("pointer") is not None:  # data.dvc as it was, committed or not
        write_atomic(pointer, str(entry["pointer"]))
    elif _run(repo, "git", "ls-files", "--", "data.dvc"):
        _run(repo, "git", "checkout", "HEAD", "--", "data.dvc")
    else:
        pointer.unlink(missing_ok=True)
    cache = Path(str(entry["cache_dir"]))
    before = set(entry["cache"])  # type: ignore[arg-type]
    for name in sorted(_cache_files(cache) - before):
        (cache / name).unlink(missing_ok=True)
    (repo / JOURNAL).unlink(missing_ok=True)


def recover(repo: Path) -> str | None:
    """Finish with an ingest that a previous run left half-done (killed before it ended).

    If its commit landed, only the journal is removed; otherwise ``data/``, ``data.dvc`` and the
    DVC cache are rolled back, so the batch can be ingested again from the start.

    Returns:
        What was done, for the log; None when there was nothing to recover.
    """
    path = repo / JOURNAL
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IngestError(
            f"{path}: unreadable ingest journal ({exc}); inspect and remove it"
        ) from exc
    if _run(repo, "git", "rev-parse", "HEAD") != entry["head"]:
        path.unlink()
        return f"the interrupted ingest of {entry['target']} had been committed"
    _undo(repo, entry)
    return f"rolled back an interrupted ingest of {entry['target']}"


def _raise_interrupted(signum: int, frame: object) -> None:
    raise IngestInterrupted(f"interrupted by signal {signum}; data/, data.dvc and git rolled back")


@contextmanager
def _sigterm_rolls_back() -> Iterator[None]:
    """Turn SIGTERM (a pod being stopped) into an exception, so the rollback below runs."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    except ValueError:  # not the main thread: the journal still covers a kill
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _is_pinned(repo: Path) -> bool:
    """Whether ``data/`` and ``data.dvc`` match what HEAD commits (nothing left uncommitted)."""
    if _run(repo, "git", "status", "--porcelain", "--", "data.dvc"):
        return False
    return (
        proc.run_bytes(["dvc", "status", "--quiet", "data.dvc"], repo, check=False).returncode == 0
    )


def _push(repo: Path, branch: str) -> None:
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
        push: Also ``dvc push`` the data and ``git push`` the commit to ``origin`` (again when
            the batch was already ingested, so a retry after a failed push completes it).
        branch: Branch to push to.

    Returns:
        The stored path, the batch's row count and the new commit (None when already ingested).

    Raises:
        IngestError: The batch is missing, its footer or its validation failed (the message
            names the failing checks and the report) or DVC/git failed; ``data/``, ``data.dvc``
            and the DVC cache are restored in that case.
    """
    from argosy.validation.suite import DataValidationError, validate_dir

    check_batch_file(batch)
    recovered = recover(repo)
    if recovered:
        log.warning("%s", recovered)
    check_footer(batch, contract, repo / "data")
    check_row_groups(batch, contract)
    digest = file_sha256(batch)
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
            if not _is_pinned(repo):
                raise IngestError(
                    f"{target} is in data/ but the committed data.dvc does not pin it (or "
                    "data.dvc has uncommitted changes); nothing done. Restore data/ with "
                    "`git checkout -- data.dvc && dvc checkout --relink data.dvc` and remove "
                    f"{target.name}, then ingest again"
                )
            log.info("%s is already ingested as %s", batch, target)
            if push:
                _push(repo, branch)
            return IngestResult(target, outcome.rows, None)
        if _run(repo, "git", "status", "--porcelain", "--", "data.dvc"):
            raise IngestError(
                "data.dvc has uncommitted changes; commit or restore it "
                "(`git checkout -- data.dvc`) before ingesting, nothing done"
            )
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
    commit = add_batch(
        repo, batch, target, f"Ingest data batch {digest[:16]} ({outcome.rows} rows)"
    )
    if push:
        _push(repo, branch)
    return IngestResult(target, outcome.rows, commit)


def add_batch(repo: Path, batch: Path, target: Path, message: str | None = None) -> str | None:
    """Copy ``batch`` to ``target`` in ``data/`` and ``dvc add data``, all or nothing.

    With ``message``, ``data.dvc`` is committed too and the new commit returned. A journal in
    ``.dvc/tmp`` records where things stood, so a failure, SIGTERM, or a kill followed by the next
    run (:func:`recover`) puts ``data/``, ``data.dvc`` and the DVC cache back.

    Raises:
        IngestError: DVC or git failed (everything rolled back).
    """
    cache = _cache_dir(repo)
    entry: dict[str, object] = {
        "target": target.name,
        "head": _run(repo, "git", "rev-parse", "HEAD"),
        "cache_dir": str(cache),
        "cache": sorted(_cache_files(cache)),
        "pointer": (repo / "data.dvc").read_text() if (repo / "data.dvc").exists() else None,
    }
    with _sigterm_rolls_back():
        _write_journal(repo, entry)
        try:
            shutil.copy(batch, target)
            _run(repo, "dvc", "add", "--quiet", "data")
            if message is not None:
                _run(repo, "git", "add", "data.dvc")
                _run(
                    repo,
                    "git",
                    *identity_args(repo),
                    "commit",
                    "--quiet",
                    "-m",
                    message,
                    "--",
                    "data.dvc",
                )
        except BaseException:
            if _run(repo, "git", "rev-parse", "HEAD") == entry["head"]:
                _undo(repo, entry)
            raise
        (repo / JOURNAL).unlink(missing_ok=True)
    return None if message is None else _run(repo, "git", "rev-parse", "HEAD")
