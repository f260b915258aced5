"""Time-ordered train/valid/test split and the drift reference sample.

Splitting by time, not at random, is what a fraud model meets in production: it is trained on the
past and scored on the future. The reference sample for drift monitoring comes from the training
period, encoded exactly as the server logs features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from argosy.config import PrepareParams
from argosy.data import schema

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitSizes:
    """Row counts of each split."""

    train: int
    valid: int
    test: int


def split_by_time(frame: pd.DataFrame, params: PrepareParams) -> dict[str, pd.DataFrame]:
    """Order by timestamp (ties by id) and cut into train, valid and test.

    Raises:
        ValueError: Too few rows for every split to hold at least one row.
    """
    ordered = frame.sort_values(
        [schema.TIMESTAMP_COLUMN, schema.ID_COLUMN], kind="stable"
    ).reset_index(drop=True)
    n = len(ordered)
    n_test = round(n * params.test_fraction)
    n_valid = round(n * params.valid_fraction)
    n_train = n - n_valid - n_test
    if min(n_train, n_valid, n_test) < 1:
        raise ValueError(f"{n} rows are too few to split into train/valid/test")
    return {
        "train": ordered.iloc[:n_train],
        "valid": ordered.iloc[n_train : n_train + n_valid],
        "test": ordered.iloc[n_train + n_valid :],
    }


def reference_sample(train: pd.DataFrame, params: PrepareParams) -> pd.DataFrame:
    """A seeded sample of the training period's model features, as the server logs them."""
    rows = min(params.reference_rows, len(train))
    rng = np.random.default_rng(params.seed)
    index = np.sort(rng.choice(len(train), size=rows, replace=False))
    sample = train.iloc[index]
    matrix = schema.to_matrix(sample)
    reference = pd.DataFrame(matrix, columns=list(schema.FEATURES))
    reference[schema.LABEL_COLUMN] = sample[schema.LABEL_COLUMN].to_numpy()
    return reference


def prepare(data_dir: Path, out_dir: Path, params: PrepareParams) -> SplitSizes:
    """Read the validated raw data, write the splits and the reference sample as Parquet."""
    files = sorted(data_dir.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no Parquet files to prepare")
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    splits = split_by_time(frame, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        part.to_parquet(out_dir / f"{name}.parquet", index=False)
    reference_sample(splits["train"], params).to_parquet(out_dir / "reference.parquet", index=False)
    sizes = SplitSizes(*(len(splits[s]) for s in SPLITS))
    log.info("split %d rows: %s", len(frame), sizes)
    return sizes


def load_split(prepared_dir: Path, name: str) -> pd.DataFrame:
    """Read one prepared split."""
    return pd.read_parquet(prepared_dir / f"{name}.parquet")
