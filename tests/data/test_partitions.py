"""A data directory reads as partitions: one row group each, with the schema the files agree on."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from argosy.data.partitions import DataSetError, read, scan


def test_each_row_group_is_a_partition_numbered_in_file_order(tmp_path: Path) -> None:
    # Given two files, written in reverse name order, of row groups of 2 rows
    pq.write_table(pa.table({"x": [5, 6, 7]}), tmp_path / "b.parquet", row_group_size=2)
    pq.write_table(pa.table({"x": [1, 2, 3, 4]}), tmp_path / "a.parquet", row_group_size=2)
    # When scanned
    data = scan(tmp_path)
    # Then partitions follow the file names, then the row groups, numbering rows throughout
    assert [(p.name, p.offset, p.rows) for p in data.partitions] == [
        ("a.parquet row group 0", 0, 2),
        ("a.parquet row group 1", 2, 2),
        ("b.parquet row group 0", 4, 2),
        ("b.parquet row group 1", 6, 1),
    ]
    assert data.rows == 7
    # And a partition reads only its own rows
    assert read(data.partitions[3], data.schema).column("x").to_pylist() == [7]


def test_files_read_with_the_schema_they_agree_on(tmp_path: Path) -> None:
    # Given one file lacking a column and another whose column is all nulls
    pq.write_table(pa.table({"x": [1], "y": ["a"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": [2]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"x": [3], "y": pa.nulls(1)}), tmp_path / "c.parquet")
    # When each partition is read
    data = scan(tmp_path)
    tables = [read(p, data.schema) for p in data.partitions]
    # Then each has every column, typed as the files agree: missing or null columns are nulls
    assert all(t.schema == data.schema for t in tables)
    assert data.schema.field("y").type == pa.string()
    assert [t.column("y").to_pylist() for t in tables] == [["a"], [None], [None]]
    # And a subset of columns reads alone
    assert read(data.partitions[1], data.schema, ["y"]).column_names == ["y"]


def test_a_file_without_row_groups_is_one_empty_partition(tmp_path: Path) -> None:
    # Given a file closed before any row was written
    pq.ParquetWriter(tmp_path / "a.parquet", pa.schema([("x", pa.int64())])).close()
    # When scanned / Then it is one partition of no rows, readable with its columns
    [partition] = scan(tmp_path).partitions
    assert partition.rows == 0
    assert read(partition, pa.schema([("x", pa.int64())])).num_rows == 0


@pytest.mark.parametrize(
    ("files", "check", "message"),
    [
        ({}, "readable_data", r"no Parquet files found"),
        ({"a.parquet": b"not parquet"}, "readable_parquet", r"a\.parquet: not a readable Parquet"),
        (
            {"a.parquet": pa.table({"x": [1]}), "b.parquet": pa.table({"x": ["1"]})},
            "consistent_files",
            r"files disagree on their schema",
        ),
    ],
    ids=["no-files", "unreadable-footer", "disagreeing-types"],
)
def test_problems_are_named(tmp_path: Path, files: dict, check: str, message: str) -> None:
    # Given a data directory with a problem
    for name, content in files.items():
        if isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            pq.write_table(content, tmp_path / name)
    # When scanned / Then the problem is named, with the check it fails
    with pytest.raises(DataSetError, match=message) as failed:
        scan(tmp_path)
    assert [c for c, _ in failed.value.problems] == [check]
