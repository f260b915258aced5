"""`argosy ingest` end to end in a temporary repository: real git, DVC and Great Expectations.

The repository has a bare ``origin`` and a directory DVC remote, as the ingest WorkflowTemplate's
checkout has in the cluster. A good batch lands as one pushed commit of ``data.dvc``; a bad one is
rejected with its report and leaves git, ``data/`` and the DVC cache exactly as they were.
"""

from __future__ import annotations

import json
import subprocess
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


def ingest(repo: Path, batch: Path, dvc_remote: Path) -> subprocess.CompletedProcess[str]:
    """Run the command the ingest WorkflowTemplate runs, pushing to origin and the DVC remote."""
    return subprocess.run(
        [
            *("argosy", "ingest", "--batch", str(batch), "--reports", "reports/ingest"),
            *("--push", "--branch", "main", "--dvc-remote", str(dvc_remote)),
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        env=venv_env(**IDENTITY),
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
