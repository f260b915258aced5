"""Read a time window of the server's Parquet prediction log, and late labels.

The log's layout and columns are the server's contract (``argosy.serving.predlog``): Hive-style
``date=YYYY-MM-DD`` partitions of ``part-*.parquet`` files; names starting with ``.`` are files
still being written and are skipped. Only the partitions the window touches are opened. A missing
root, an empty or corrupt file, or a file without the expected columns is an error that names the
path: a monitor that silently read less would report "no drift" on data it never saw.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from argosy.data import schema
from argosy.serving.predlog import PARTITION_KEY, prediction_log_columns


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


def _read_file(fs, path: str, columns: list[str]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fs.size(path) == 0:
        raise PredictionLogError(f"{path}: empty file (0 bytes); a writer crashed mid-write?")
    try:
        with fs.open(path, "rb") as handle:
            table = pq.read_table(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PredictionLogError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise PredictionLogError(
            f"{path}: lacks prediction-log columns {missing[:6]}; was it written by another "
            "model's server?"
        )
    return table.select(columns).to_pandas()


def read_window(root: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Logged predictions with ``start <= timestamp < end`` (UTC-aware datetimes).

    Returns:
        The log's columns (features as float32); no rows when the window is quiet.

    Raises:
        PredictionLogError: Missing root, or an empty, corrupt or foreign file.
    """
    columns = prediction_log_columns(schema.FEATURES)
    fs, _ = _fs(root)
    parts = [_read_file(fs, f, columns) for f in log_files(root, start, end)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=np.float32) for c in columns})
    frame = pd.concat(parts, ignore_index=True)
    stamps = frame["timestamp"]
    keep = (stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))
    return frame.loc[keep].reset_index(drop=True)


def read_labels(path: str) -> pd.DataFrame:
    """Late labels: ``transaction_id`` and ``is_fraud`` from a Parquet file or a directory of them.

    The simulator's transaction files qualify as they are (a chargeback feed would be the same two
    columns).

    Raises:
        PredictionLogError: Missing path, no files, unreadable files, or missing columns.
    """
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
    columns = [schema.ID_COLUMN, schema.LABEL_COLUMN]
    frames = []
    for f in files:
        try:
            frames.append(_read_file(fs, f, columns))
        except PredictionLogError as exc:
            message = str(exc).replace("prediction-log columns", "label columns")
            raise PredictionLogError(message) from None
    labels = pd.concat(frames, ignore_index=True)
    return labels.drop_duplicates(schema.ID_COLUMN, keep="last")
