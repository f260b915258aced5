"""Prepared splits of several small row groups, and a recorder that refuses whole-file reads."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from argosy.config import PrepareParams
from argosy.data.contract import Contract
from argosy.data.prepare import prepare
from argosy.examples.fraud.simulate import SimulationSpec, simulate

#: Rows per raw row group, so every split of :func:`prepared_splits` has several.
GROUP = 3_000


def prepared_splits(root: Path, params: PrepareParams, contract: Contract) -> Path:
    """Simulate 40k rows, write them in :data:`GROUP`-row groups and prepare them; the splits."""
    frame = simulate(SimulationSpec(40_000, 11, date(2026, 1, 1), 30))
    (root / "data").mkdir(parents=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, root / "data" / "part.parquet", row_group_size=GROUP)
    prepare(root / "data", root / "prepared", params, contract)
    return root / "prepared"


class Reads:
    """While installed: the rows of every row group read; a whole-file read raises."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Patch pyarrow's and pandas' Parquet readers through ``monkeypatch``."""
        self.rows: list[int] = []
        original = pq.ParquetFile.read_row_group

        def read_row_group(parquet: pq.ParquetFile, index: int, *args, **kwargs) -> pa.Table:
            table = original(parquet, index, *args, **kwargs)
            self.rows.append(table.num_rows)
            return table

        def whole_file(*args, **kwargs):
            raise AssertionError("a split was read whole")

        monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)
        monkeypatch.setattr(pq.ParquetFile, "read", whole_file)
        monkeypatch.setattr(pq, "read_table", whole_file)
        monkeypatch.setattr(pd, "read_parquet", whole_file)


def row_groups(path: Path) -> list[int]:
    """Rows of each row group of a Parquet file, from its footer."""
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
