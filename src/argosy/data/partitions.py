"""The raw data set as partitions: one Parquet row group each, read one at a time.

A partition is one row group of one ``*.parquet`` file directly under the data directory, files in
name order and row groups in file order; a row's number is its position in that order. Row groups
are what a Parquet reader fetches on its own and what writers bound (the simulator writes 256,000
rows per group, ``argosy ingest`` refuses groups over 256 MiB), so a stage that reads partition by
partition holds one row group, whatever the number or size of the files. A data set kept as one
file per day is one partition per day as long as each file is one row group.

Every partition is read with the schema the files agree on, as concatenating the files would give
it: a column missing from a file reads as nulls, a column that is all-null in one file takes the
other files' type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class DataSetError(ValueError):
    """The data directory has no Parquet files, an unreadable one, or files that disagree.

    Attributes:
        problems: One ``(check, message)`` per problem, naming the file.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


@dataclass(frozen=True)
class Partition:
    """One row group of one file.

    Attributes:
        path: The Parquet file.
        row_group: The row group's index in the file.
        offset: The data set's number of the partition's first row.
        rows: Rows in the partition.
    """

    path: Path
    row_group: int
    offset: int
    rows: int

    @property
    def name(self) -> str:
        """How reports name the partition: the file and its row group."""
        return f"{self.path.name} row group {self.row_group}"


@dataclass(frozen=True)
class DataSet:
    """The partitions of a data directory and the schema they are read with."""

    partitions: tuple[Partition, ...]
    schema: pa.Schema

    @property
    def rows(self) -> int:
        """Rows in the whole data set."""
        return sum(p.rows for p in self.partitions)

    @property
    def offsets(self) -> list[int]:
        """Each partition's first row number, in order (for finding a row's partition)."""
        return [p.offset for p in self.partitions]


def scan(data_dir: Path) -> DataSet:
    """Read the footers of every Parquet file under ``data_dir``; no row is read.

    Raises:
        DataSetError: No Parquet files, unreadable footers, or schemas that cannot be unified.
    """
    files = sorted(data_dir.glob("*.parquet")) if data_dir.is_dir() else []
    if not files:
        raise DataSetError([("readable_data", f"{data_dir}: no Parquet files found")])
    partitions: list[Partition] = []
    schemas: list[pa.Schema] = []
    problems: list[tuple[str, str]] = []
    offset = 0
    for path in files:
        try:
            with pq.ParquetFile(path) as parquet:
                meta, schema = parquet.metadata, parquet.schema_arrow
        except (pa.ArrowException, OSError) as exc:
            problems.append(("readable_parquet", f"{path}: not a readable Parquet file ({exc})"))
            continue
        schemas.append(schema)
        # A file without row groups is one empty partition, so its columns are still checked.
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] or [0]
        for index, rows in enumerate(sizes):
            partitions.append(Partition(path, index, offset, rows))
            offset += rows
    if problems:
        raise DataSetError(problems)
    try:
        schema = pa.unify_schemas(schemas, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataSetError(
            [("consistent_files", f"files disagree on their schema ({exc})")]
        ) from None
    return DataSet(tuple(partitions), schema)


def read(partition: Partition, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """The partition's rows with ``schema`` (or its ``columns`` only), in file order.

    Raises:
        pyarrow.ArrowException: The row group cannot be decoded.
        OSError: The file cannot be read.
    """
    fields = [schema.field(c) for c in columns] if columns is not None else list(schema)
    with pq.ParquetFile(partition.path) as parquet:
        present = set(parquet.schema_arrow.names)
        wanted = [f.name for f in fields if f.name in present]
        if partition.rows == 0 or parquet.metadata.num_row_groups == 0:
            table = parquet.schema_arrow.empty_table().select(wanted)
        else:
            table = parquet.read_row_group(partition.row_group, columns=wanted)
    arrays = [
        table.column(f.name).cast(f.type) if f.name in present else pa.nulls(table.num_rows, f.type)
        for f in fields
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))
