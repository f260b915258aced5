"""Read a time window of the server's Parquet prediction log, and late labels.

The log's layout and columns are the server's contract (``argosy.predlog``; the feature
columns are the data contract's ``features:``, named as in metadata.json): Hive-style
``date=YYYY-MM-DD`` partitions of ``part-*.parquet`` files; names starting with ``.`` are files
still being written and are skipped. Only the partitions the window touches are opened. A missing
root, an empty or corrupt file, or a file without the expected columns is an error that names the
path: a monitor that silently read less would report "no drift" on data it never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from argosy.data.contract import Contract
from argosy.predlog import PARTITION_KEY, prediction_log_columns


class PredictionLogError(RuntimeError):
    """The prediction log or the labels cannot be read as promised."""


def _fs(root: str):
    import fsspec

    return fsspec.core.url_to_fs(root)


def _days(start: datetime, end: datetime) -> list[str]:
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def log_files(root: str, start: datetime, end: datetime) -> list[str]:
    """The Parquet files of the partitions that overlap ``[start, end)``.

    Raises:
        PredictionLogError: ``root`` does not exist.
    """
    fs, base = _fs(root)
    if not fs.exists(base):
        raise PredictionLogError(
            f"{root}: no prediction log here (start the server with --prediction-log {root})"
        )
    files: list[str] = []
    for day in _days(start, end):
        directory = f"{base.rstrip('/')}/{PARTITION_KEY}={day}"
        if fs.exists(directory):
            names = fs.ls(directory, detail=False)
            files += sorted(
                n for n in names if n.endswith(".parquet") and not Path(n).name.startswith(".")
            )
    return files


def _read_table(fs, path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fs.size(path) == 0:
        raise PredictionLogError(f"{path}: empty file (0 bytes); a writer crashed mid-write?")
    try:
        with fs.open(path, "rb") as handle:
            return pq.read_table(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PredictionLogError(f"{path}: not a readable Parquet file ({exc})") from None


def _read_file(fs, path: str, columns: list[str]) -> pd.DataFrame:
    table = _read_table(fs, path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise PredictionLogError(
            f"{path}: lacks prediction-log columns {missing[:6]}; was it written by another "
            "model's server?"
        )
    return table.select(columns).to_pandas()


def read_window(root: str, start: datetime, end: datetime, features: Sequence[str]) -> pd.DataFrame:
    """Logged predictions with ``start <= timestamp < end`` (UTC-aware datetimes).

    Args:
        root: The log's root (directory or fsspec URI).
        start: Window start, inclusive.
        end: Window end, exclusive.
        features: The model's features (the contract's ``feature_names``).

    Returns:
        The log's columns (features as float32); no rows when the window is quiet.

    Raises:
        PredictionLogError: Missing root, or an empty, corrupt or foreign file.
    """
    columns = prediction_log_columns(list(features))
    fs, _ = _fs(root)
    parts = [_read_file(fs, f, columns) for f in log_files(root, start, end)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=np.float32) for c in columns})
    frame = pd.concat(parts, ignore_index=True)
    stamps = frame["timestamp"]
    keep = (stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))
    return frame.loc[keep].reset_index(drop=True)


def read_labels(path: str, contract: Contract) -> pd.DataFrame:
    """Late labels: the contract's ``id`` and ``label.column``, from a Parquet file or a directory.

    Any Parquet file with those two columns qualifies (the raw data files themselves, or a feed of
    just the two). Rows without a label yet are dropped; a row id labelled twice keeps the last.

    Raises:
        PredictionLogError: The contract declares no id; missing path, no files, unreadable
            files, a missing column (named with its contract key), or a label value that is neither
            ``label.positive`` nor ``label.negative``.
    """
    if contract.id is None:
        raise PredictionLogError(
            "contract.yaml declares no `id`: late labels are joined on the row id"
        )
    fs, base = _fs(path)
    if not fs.exists(base):
        raise PredictionLogError(f"{path}: no labels here")
    files = [base]
    if fs.isdir(base):
        files = sorted(
            n for n in fs.find(base) if n.endswith(".parquet") and not Path(n).name.startswith(".")
        )
    if not files:
        raise PredictionLogError(f"{path}: no Parquet label files")
    keys = {contract.id: "id", contract.label.column: "label.column"}
    frames = []
    for f in files:
        table = _read_table(fs, f)
        missing = [c for c in keys if c not in table.column_names]
        if missing:
            named = ", ".join(f"{c!r} (contract.yaml {keys[c]})" for c in missing)
            raise PredictionLogError(f"{f}: lacks label columns {named}")
        frames.append(table.select(list(keys)).to_pandas())
    labels = pd.concat(frames, ignore_index=True)
    labels = labels.dropna(subset=list(keys))
    values = labels[contract.label.column]
    known = (values == contract.label.positive) | (values == contract.label.negative)
    if not known.all():
        odd = sorted({repr(v) for v in values[~known].unique()[:5]})
        raise PredictionLogError(
            f"{path}: label column {contract.label.column!r} holds {', '.join(odd)}, neither "
            f"contract.yaml label.positive ({contract.label.positive!r}) nor label.negative "
            f"({contract.label.negative!r})"
        )
    return labels.drop_duplicates(contract.id, keep="last").reset_index(drop=True)
