"""Reading the prediction log: the window's rows, and clear errors for missing or bad files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from argosy.monitoring.predlog import PredictionLogError, read_labels, read_window
from tests.monitoring.conftest import encoded, fraud_contract, write_log
from tests.monitoring.second import second_contract, second_rows

START = datetime(2026, 5, 1, 22, tzinfo=UTC)
FEATURES = fraud_contract().feature_names


def test_window_reads_rows_across_day_partitions_and_no_others(
    tmp_path: Path, small_frame: pd.DataFrame
) -> None:
    # Given 4 hours of logged predictions that cross midnight (two date= partitions)
    rows = encoded(small_frame.head(4000))
    write_log(tmp_path / "log", rows, START, timedelta(hours=4))
    # When the 2-hour window from 23:00 is read
    window = read_window(
        str(tmp_path / "log"), START + timedelta(hours=1), START + timedelta(hours=3), FEATURES
    )
    # Then exactly the rows stamped inside it come back, features as float32
    assert len(window) == 2000
    assert window["timestamp"].min() >= pd.Timestamp(START + timedelta(hours=1))
    assert window["timestamp"].max() < pd.Timestamp(START + timedelta(hours=3))
    assert window["amount_usd"].dtype == "float32"


def test_a_quiet_window_is_empty_not_an_error(tmp_path: Path, small_frame: pd.DataFrame) -> None:
    # Given a log with traffic only on one day
    write_log(tmp_path / "log", encoded(small_frame.head(100)), START, timedelta(minutes=10))
    # When a window a week later is read
    later = START + timedelta(days=7)
    # Then it has no rows
    assert read_window(str(tmp_path / "log"), later, later + timedelta(hours=1), FEATURES).empty


def test_missing_log_root_says_where_the_server_should_log(tmp_path: Path) -> None:
    # Given no prediction log directory
    # When a window is read
    # Then the error names the path and the server option
    with pytest.raises(PredictionLogError, match=r"no prediction log here.*--prediction-log"):
        read_window(str(tmp_path / "nope"), START, START + timedelta(hours=1), FEATURES)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty file \(0 bytes\)"),
        (b"PAR1 this is not parquet at all", r"not a readable Parquet file"),
    ],
)
def test_empty_and_corrupt_files_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    # Given a partition holding an empty or corrupt part file
    day = tmp_path / "log" / f"date={START.date().isoformat()}"
    day.mkdir(parents=True)
    (day / "part-bad.parquet").write_bytes(content)
    # When the window is read
    # Then the error names the file and what is wrong with it
    with pytest.raises(PredictionLogError, match=rf"part-bad\.parquet: {message}"):
        read_window(str(tmp_path / "log"), START, START + timedelta(hours=1), FEATURES)


def test_in_flight_temporary_files_are_skipped(tmp_path: Path, small_frame: pd.DataFrame) -> None:
    # Given a complete part file and a half-written temporary one beside it
    write_log(tmp_path / "log", encoded(small_frame.head(50)), START, timedelta(minutes=5))
    day = tmp_path / "log" / f"date={START.date().isoformat()}"
    (day / ".part-x.parquet.tmp").write_bytes(b"half")
    # When the window is read
    window = read_window(str(tmp_path / "log"), START, START + timedelta(hours=1), FEATURES)
    # Then only the complete file counts
    assert len(window) == 50


def test_a_file_without_the_log_columns_is_rejected(tmp_path: Path) -> None:
    # Given a Parquet file of some other shape in a partition
    day = tmp_path / "log" / f"date={START.date().isoformat()}"
    day.mkdir(parents=True)
    pd.DataFrame({"x": [1.0]}).to_parquet(day / "part-other.parquet")
    # When the window is read
    # Then the error lists the missing columns
    with pytest.raises(PredictionLogError, match=r"lacks prediction-log columns \['request_id'"):
        read_window(str(tmp_path / "log"), START, START + timedelta(hours=1), FEATURES)


def test_labels_read_from_raw_files_and_reject_other_files(
    tmp_path: Path, small_frame: pd.DataFrame
) -> None:
    # Given the example's raw file (a label feed) and a file without its label column
    contract = fraud_contract()
    small_frame.head(10).to_parquet(tmp_path / "labels.parquet")
    pd.DataFrame({contract.id: ["a"]}).to_parquet(tmp_path / "nolabel.parquet")
    # When each is read as labels
    labels = read_labels(str(tmp_path / "labels.parquet"), contract)
    # Then the first gives the contract's id and label, the second an error naming the column
    # and its contract key
    assert list(labels.columns) == [contract.id, contract.label.column]
    assert len(labels) == 10
    with pytest.raises(
        PredictionLogError,
        match=rf"lacks label columns '{contract.label.column}' \(contract.yaml label.column\)",
    ):
        read_labels(str(tmp_path / "nolabel.parquet"), contract)


def test_labels_of_another_contract_name_its_id_key_and_its_label_values(tmp_path: Path) -> None:
    # Given the second contract's raw rows, a copy without its id and one with an odd label
    contract = second_contract()
    rows = second_rows(50, seed=1).drop(columns="score")
    rows.to_parquet(tmp_path / "labels.parquet")
    rows.drop(columns="row-key").to_parquet(tmp_path / "noid.parquet")
    rows.assign(churned="maybe").to_parquet(tmp_path / "odd.parquet")
    # When each is read as labels
    labels = read_labels(str(tmp_path / "labels.parquet"), contract)
    # Then the raw file gives `row-key` and `churned`; the others say what is wrong by key
    assert list(labels.columns) == ["row-key", "churned"]
    assert set(labels["churned"]) == {"yes", "no"}
    with pytest.raises(PredictionLogError, match=r"'row-key' \(contract.yaml id\)"):
        read_labels(str(tmp_path / "noid.parquet"), contract)
    with pytest.raises(PredictionLogError, match=r"'maybe'.*label.positive \('yes'\)"):
        read_labels(str(tmp_path / "odd.parquet"), contract)
