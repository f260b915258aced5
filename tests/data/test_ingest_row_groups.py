"""Ingest reads a batch one row group at a time and refuses a bad one before the suite runs.

Real Parquet files from the example's simulator; the repository is a real (empty) git checkout.
"""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from argosy.data.contract import load_contract
from argosy.examples.fraud.simulate import SimulationSpec, simulate
from argosy.loop import ingest

REPO = Path(__file__).resolve().parents[2]
CONTRACT = load_contract(REPO / "contract.yaml")
GROUP = 500


@pytest.fixture(scope="module")
def frame():
    return simulate(SimulationSpec(rows=2000, seed=11, start=date(2024, 3, 1), days=7))


def write(frame, path: Path) -> Path:
    frame.to_parquet(path, row_group_size=GROUP)
    return path


def test_a_good_batch_passes_reading_one_row_group_at_a_time(
    frame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a valid batch of four row groups
    path = write(frame, tmp_path / "batch.parquet")
    assert pq.ParquetFile(path).metadata.num_row_groups == 4
    reads: list[int] = []
    original = pq.ParquetFile.read_row_group

    def spy(self, i, *args, **kwargs):
        reads.append(i)
        table = original(self, i, *args, **kwargs)
        assert table.num_rows <= GROUP  # never more than one row group in memory
        return table

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    # When its row groups are checked, Then it passes, each group read once, in order
    ingest.check_row_groups(path, CONTRACT)
    assert reads == [0, 1, 2, 3]


def test_each_broken_rule_is_named_with_its_row_group(frame, tmp_path: Path) -> None:
    # Given a batch with one bad value of each kind, in different row groups
    bad = frame.copy()
    bad.loc[10, "currency"] = "XXX"
    bad.loc[600, "hour_of_day"] = 24
    bad.loc[1100, "amount_usd"] = None
    bad.loc[1600, CONTRACT.label.column] = 7
    path = write(bad, tmp_path / "bad.parquet")
    # When its row groups are checked
    with pytest.raises(ingest.IngestError) as refused:
        ingest.check_row_groups(path, CONTRACT)
    message = str(refused.value)
    # Then each problem is named with its row group, column and count
    assert "rejected row group by row group, nothing committed" in message
    assert "row group 0: currency: 1 values not in" in message
    assert "row group 1: hour_of_day: 1 values outside [0, 23]" in message
    assert "row group 2: amount_usd: 1 null values (not nullable)" in message
    assert f"row group 3: {CONTRACT.label.column}: 1 values other than the label's" in message


def test_an_oversized_row_group_is_refused_before_it_is_read(
    frame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch whose footer declares row groups larger than the bound
    path = write(frame, tmp_path / "batch.parquet")

    def never(*args, **kwargs):
        raise AssertionError("a row group over the bound was read")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", never)
    # When checked with a bound below one row group's decoded size, Then it is refused unread
    with pytest.raises(ingest.IngestError, match=r"row group 0: .* bytes decoded, more than 1000"):
        ingest.check_row_groups(path, CONTRACT, max_group_bytes=1000)


def test_ingest_refuses_a_bad_row_group_before_the_suite_and_changes_nothing(
    frame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a git checkout with data/ and a batch with an out-of-range value
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    bad = frame.copy()
    bad.loc[5, "merchant_risk_score"] = 3.0
    batch = write(bad, tmp_path / "bad.parquet")
    from argosy.validation import suite

    def no_suite(*args, **kwargs):
        raise AssertionError("the suite ran on a batch the row-group check refuses")

    monkeypatch.setattr(suite, "validate_dir", no_suite)
    # When it is ingested
    with pytest.raises(ingest.IngestError, match="merchant_risk_score: 1 values outside"):
        ingest.ingest_batch(repo, batch, CONTRACT, tmp_path / "reports")
    # Then data/ and git are untouched
    assert list((repo / "data").iterdir()) == []
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""
