"""`argosy ingest` end to end in a temporary repository: real git, DVC and Great Expectations.

The repository has a bare ``origin`` and a directory DVC remote, as the ingest WorkflowTemplate's
checkout has in the cluster. A good batch lands as one pushed commit of ``data.dvc``; a bad one is
rejected with its report and leaves git, ``data/`` and the DVC cache exactly as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import yaml

from argosy.data.contract import load_contract
from argosy.examples.fraud.simulate import SimulationSpec, simulate

from ..conftest import REPO, venv_env

pytestmark = pytest.mark.slow

ROWS = 3000
LABEL = load_contract(REPO / "contract.yaml").label.column
IDENTITY = {
    "GIT_AUTHOR_NAME": "argosy-ingest",
    "GIT_AUTHOR_EMAIL": "argosy-ingest@example.com",
    "GIT_COMMITTER_NAME": "argosy-ingest",
    "GIT_COMMITTER_EMAIL": "argosy-ingest@example.com",
}


def sh(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, env=venv_env(**IDENTITY), timeout=300
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


def ingest_args(batch: Path, dvc_remote: Path) -> list[str]:
    """The command the ingest WorkflowTemplate runs, pushing to origin and the DVC remote."""
    return [
        *("argosy", "ingest", "--batch", str(batch), "--reports", "reports/ingest"),
        *("--push", "--branch", "main", "--dvc-remote", str(dvc_remote)),
    ]


def ingest(
    repo: Path, batch: Path, dvc_remote: Path, path_first: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `argosy ingest` as the WorkflowTemplate does (``path_first``: shims ahead on PATH)."""
    env = venv_env(**IDENTITY)
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ingest_args(batch, dvc_remote),
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def batch(path: Path, seed: int, start: date) -> Path:
    """Write a baseline batch of ROWS transactions (its ids carry the seed and start day)."""
    simulate(SimulationSpec(rows=ROWS, seed=seed, start=start, days=7)).to_parquet(path)
    return path


def cache_files(repo: Path) -> set[str]:
    return {str(p.relative_to(repo)) for p in (repo / ".dvc" / "cache").rglob("*") if p.is_file()}


def data_files(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / "data").iterdir())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git + DVC repository with one pinned batch, its bare origin and an empty DVC remote."""
    work, origin = tmp_path / "work", tmp_path / "origin.git"
    (work / "data").mkdir(parents=True)
    (work / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (work / "contract.yaml").write_text((REPO / "contract.yaml").read_text())
    batch(work / "data" / "transactions.parquet", seed=1, start=date(2026, 1, 1))
    sh(work, "git", "init", "-q", "-b", "main")
    sh(work, "dvc", "init", "-q")
    sh(work, "dvc", "add", "-q", "data")
    sh(work, "git", "add", "-A")
    sh(work, "git", "commit", "-qm", "first data version")
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    sh(work, "git", "remote", "add", "origin", str(origin))
    sh(work, "git", "push", "-q", "origin", "main")
    return work


def test_a_good_batch_becomes_one_pushed_commit_of_data_dvc(tmp_path: Path, repo: Path) -> None:
    # Given a clean repository and a valid batch of new transactions
    new = batch(tmp_path / "new.parquet", seed=2, start=date(2026, 2, 1))
    dvc_remote = tmp_path / "dvc-remote"
    head, pin = sh(repo, "git", "rev-parse", "HEAD"), (repo / "data.dvc").read_text()
    # When it is ingested
    proc = ingest(repo, new, dvc_remote)
    # Then exactly one commit landed, changing data.dvc only, and origin has it
    assert proc.returncode == 0, proc.stderr
    assert sh(repo, "git", "rev-list", "--count", f"{head}..HEAD") == "1"
    assert sh(repo, "git", "diff", "--name-only", head, "HEAD") == "data.dvc"
    assert sh(repo, "git", "rev-parse", "origin/main") == sh(repo, "git", "rev-parse", "HEAD")
    assert sh(repo, "git", "status", "--porcelain", "--", "data.dvc", "data") == ""
    # And data.dvc pins a new directory version of both files, with the batch's rows
    out = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]
    assert (repo / "data.dvc").read_text() != pin
    assert out["nfiles"] == 2
    assert f"ingested {ROWS} rows" in proc.stdout
    assert len([f for f in data_files(repo) if f.startswith("batch-")]) == 1
    # And the new version is in the DVC remote, so a fresh checkout can pull it
    assert (
        sh(repo, "dvc", "status", "--cloud", "data.dvc") == "Cache and remote 'argosy' are in sync."
    )
    # When the same batch arrives again
    again = ingest(repo, new, dvc_remote)
    # Then it is a no-op: no second commit
    assert again.returncode == 0, again.stderr
    assert "already ingested" in again.stdout
    assert sh(repo, "git", "rev-list", "--count", f"{head}..HEAD") == "1"


def state(repo: Path) -> tuple[str, bytes, list[str], set[str], str]:
    """What a failed ingest must leave as it was: HEAD, data.dvc, data/, the DVC cache, status."""
    return (
        sh(repo, "git", "rev-parse", "HEAD"),
        (repo / "data.dvc").read_bytes(),
        data_files(repo),
        cache_files(repo),
        sh(repo, "git", "status", "--porcelain", "--", "data.dvc", "data"),
    )


def all_fraud(path: Path) -> Path:
    """A batch whose label rate is far above the data gate's bound: every row is fraud."""
    frame = simulate(SimulationSpec(rows=ROWS, seed=3, start=date(2026, 3, 1), days=7))
    frame[LABEL] = 1
    frame.to_parquet(path)
    return path


def repeated_ids(path: Path) -> Path:
    """A batch valid on its own whose transaction ids are already in data/ (same seed and day)."""
    frame = simulate(SimulationSpec(rows=ROWS // 2, seed=1, start=date(2026, 1, 1), days=3))
    frame.to_parquet(path)
    return path


@pytest.mark.parametrize(
    ("make_batch", "expectation", "column", "report_dir"),
    [
        (all_fraud, "expect_column_mean_to_be_between", f"{LABEL} == 1", "reports/ingest"),
        (
            repeated_ids,
            "expect_column_values_to_be_unique",
            "transaction_id",
            "reports/ingest/with-data",
        ),
    ],
    ids=["label-rate", "ids-already-in-data"],
)
def test_a_bad_batch_is_rejected_with_its_report_and_changes_nothing(
    tmp_path: Path,
    repo: Path,
    make_batch: Callable[[Path], Path],
    expectation: str,
    column: str,
    report_dir: str,
) -> None:
    # Given a batch that fails the data gate, alone or together with data/
    bad = make_batch(tmp_path / "bad.parquet")
    head, pin = sh(repo, "git", "rev-parse", "HEAD"), (repo / "data.dvc").read_bytes()
    cache, data = cache_files(repo), data_files(repo)
    # When it is ingested
    proc = ingest(repo, bad, tmp_path / "dvc-remote")
    # Then the command fails and names the failing expectation and the report
    assert proc.returncode == 1, proc.stdout
    assert "rejected, nothing committed" in proc.stderr
    assert f"{expectation}({column})" in proc.stderr
    assert f"report: {report_dir}" in proc.stderr
    report = json.loads((repo / report_dir / "result.json").read_text())
    assert report["success"] is False
    assert (expectation, column) in {
        (f["expectation"], f.get("column")) for f in report["failures"]
    }
    assert (repo / report_dir / report["data_docs"]).is_file()
    # And nothing changed: no commit, same data.dvc, same data/, nothing new in the DVC cache
    assert sh(repo, "git", "rev-parse", "HEAD") == head
    assert sh(repo, "git", "rev-parse", "origin/main") == head
    assert (repo / "data.dvc").read_bytes() == pin
    assert data_files(repo) == data
    assert cache_files(repo) == cache
    assert sh(repo, "git", "status", "--porcelain", "--", "data.dvc", "data") == ""


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_missing_batch_or_a_directory_is_a_one_line_error(
    tmp_path: Path, repo: Path, kind: str
) -> None:
    # Given a --batch that does not exist, or is a directory
    batch = tmp_path / "nowhere.parquet"
    if kind == "directory":
        batch.mkdir()
    before = state(repo)
    # When it is ingested
    proc = ingest(repo, batch, tmp_path / "dvc-remote")
    # Then the command fails with one line naming the path, no traceback, and changes nothing
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    expected = "is a directory" if kind == "directory" else "no such file"
    assert lines[0].startswith(f"error: --batch {batch}")
    assert expected in lines[0]
    assert state(repo) == before


def many_identical_rows(path: Path, blocks: int, block_rows: int = 100_000) -> Path:
    """A few MB of Parquet that decodes to ``blocks * block_rows`` rows (one row group a block)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = simulate(SimulationSpec(rows=1000, seed=5, start=date(2026, 4, 1), days=7))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    block = pa.concat_tables([table] * (block_rows // table.num_rows))
    with pq.ParquetWriter(path, block.schema, compression="zstd") as writer:
        for _ in range(blocks):
            writer.write_table(block)
    return path


def run_measured(repo: Path, args: list[str], out: Path) -> tuple[int, str, int]:
    """Run a command; return its exit code, stderr and peak RSS in MiB (of that process alone)."""
    with (out / "stdout").open("w") as stdout, (out / "stderr").open("w") as stderr:
        proc = subprocess.Popen(args, cwd=repo, stdout=stdout, stderr=stderr, env=venv_env())
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:  # pragma: no cover - only when the command hangs
            proc.kill()
            raise AssertionError(f"{args} did not finish in 300 s")
    return os.waitstatus_to_exitcode(status), (out / "stderr").read_text(), usage.ru_maxrss // 1024


def test_a_footer_with_too_many_rows_is_refused_before_reading_any(
    tmp_path: Path, repo: Path
) -> None:
    # Given a contract allowing at most 1M rows, and a 7 MB batch whose footer says 3M rows
    contract = repo / "contract.yaml"
    text = contract.read_text()
    assert "rows: {min: 1000, max: 50000000}" in text
    contract.write_text(text.replace("max: 50000000}", "max: 1000000}"))
    huge = many_identical_rows(tmp_path / "huge.parquet", blocks=30)
    assert huge.stat().st_size < 20 * 2**20
    before = state(repo)
    # When it is ingested
    out = tmp_path / "out"
    out.mkdir()
    code, stderr, peak_mib = run_measured(repo, ingest_args(huge, tmp_path / "dvc-remote"), out)
    # Then it is refused from the footer, naming the count and the bound
    assert code == 1, stderr
    assert "refused before reading any rows, nothing committed" in stderr
    assert "its footer declares 3000000 rows, more than rows.max=1000000" in stderr
    # And no row was decoded: the process stayed near its import footprint (3M rows decoded to
    # a DataFrame take gigabytes), and nothing was written, not even a validation report
    assert peak_mib < 600, f"peak RSS {peak_mib} MiB"
    assert not (repo / "reports" / "ingest" / "result.json").exists()
    assert state(repo) == before


def test_a_footer_with_other_columns_is_refused_before_reading(tmp_path: Path, repo: Path) -> None:
    # Given a batch with one contract column renamed
    frame = simulate(SimulationSpec(rows=ROWS, seed=6, start=date(2026, 5, 1), days=7))
    frame = frame.rename(columns={LABEL: "label_renamed"})
    frame.to_parquet(tmp_path / "renamed.parquet")
    before = state(repo)
    # When it is ingested
    proc = ingest(repo, tmp_path / "renamed.parquet", tmp_path / "dvc-remote")
    # Then the footer check names the missing and the unexpected column, and nothing changed
    assert proc.returncode == 1
    assert f"columns missing: {LABEL}" in proc.stderr
    assert "columns not in the contract: label_renamed" in proc.stderr
    assert state(repo) == before


DVC_SHIM = """#!/bin/sh
# Stands in for dvc: `dvc add` really runs, then the ingest process is sent SIG{signal}
# (a pod stopped or killed mid-ingest); every other dvc command runs unchanged.
if [ "$1" = add ]; then
    "{real}" "$@"
    kill -{signal} "$PPID"
    sleep 5
    exit 1
fi
exec "{real}" "$@"
"""


@pytest.mark.parametrize("signal_name", ["TERM", "KILL"])
def test_an_ingest_interrupted_during_dvc_add_is_completed_by_a_retry(
    tmp_path: Path, repo: Path, signal_name: str
) -> None:
    # Given a valid batch, and a dvc whose `add` is followed by a signal to the ingest process
    new = batch(tmp_path / "new.parquet", seed=2, start=date(2026, 2, 1))
    dvc_remote = tmp_path / "dvc-remote"
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "dvc"
    real = REPO / ".venv" / "bin" / "dvc"
    shim.write_text(DVC_SHIM.replace("{real}", str(real)).replace("{signal}", signal_name))
    shim.chmod(0o755)
    before = state(repo)
    head = before[0]
    # When the ingest is interrupted during `dvc add`
    interrupted = ingest(repo, new, dvc_remote, path_first=shims)
    # Then it did not succeed, and nothing was committed or pushed
    assert interrupted.returncode != 0, interrupted.stdout
    assert sh(repo, "git", "rev-parse", "HEAD") == head
    assert sh(repo, "git", "rev-parse", "origin/main") == head
    if signal_name == "TERM":
        # And on SIGTERM it rolled back on the spot: git, data/ and the DVC cache as they were
        assert interrupted.returncode == 143
        assert "rolled back" in interrupted.stderr
        assert state(repo) == before
        assert not (repo / ".dvc" / "tmp" / "argosy-ingest.json").exists()
    # When the same ingest is retried
    retried = ingest(repo, new, dvc_remote)
    # Then it completes: one pushed commit of data.dvc pinning the batch, nothing left over
    assert retried.returncode == 0, retried.stderr
    assert "already ingested" not in retried.stdout
    assert f"ingested {ROWS} rows" in retried.stdout
    assert sh(repo, "git", "rev-list", "--count", f"{head}..HEAD") == "1"
    assert sh(repo, "git", "diff", "--name-only", head, "HEAD") == "data.dvc"
    assert sh(repo, "git", "rev-parse", "origin/main") == sh(repo, "git", "rev-parse", "HEAD")
    assert sh(repo, "git", "status", "--porcelain", "--", "data.dvc", "data") == ""
    assert yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["nfiles"] == 2
    assert sh(repo, "dvc", "status", "data.dvc") == "Data and pipelines are up to date."
    assert not (repo / ".dvc" / "tmp" / "argosy-ingest.json").exists()
