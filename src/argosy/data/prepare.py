"""The train/valid/test split and the drift reference sample.

With an event-time column in the contract the split is by time, not at random: a model is trained
on the past and scored on the future, as in production. Without one, the split is random, seeded
and stratified on the label, so every split keeps the data's positive rate. The reference sample
for drift monitoring comes from the training split, encoded exactly as the server logs features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from argosy.config import PrepareParams
from argosy.data.contract import Contract

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitSizes:
    """Row counts of each split."""

    train: int
    valid: int
    test: int


def _sizes(n: int, params: PrepareParams) -> tuple[int, int, int]:
    n_test = round(n * params.test_fraction)
    n_valid = round(n * params.valid_fraction)
    n_train = n - n_valid - n_test
    if min(n_train, n_valid, n_test) < 1:
        raise ValueError(f"{n} rows are too few to split into train/valid/test")
    return n_train, n_valid, n_test


def split_by_time(
    frame: pd.DataFrame, params: PrepareParams, contract: Contract
) -> dict[str, pd.DataFrame]:
    """Order by event time (ties by id when there is one) and cut into train, valid and test.

    Raises:
        ValueError: Too few rows for every split to hold at least one row.
    """
    keys = [c for c in (contract.time, contract.id) if c]
    ordered = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    n_train, n_valid, _ = _sizes(len(ordered), params)
    return {
        "train": ordered.iloc[:n_train],
        "valid": ordered.iloc[n_train : n_train + n_valid],
        "test": ordered.iloc[n_train + n_valid :],
    }


def split_stratified(
    frame: pd.DataFrame, params: PrepareParams, contract: Contract
) -> dict[str, pd.DataFrame]:
    """A seeded random split that keeps the positive rate in every split.

    Each class is shuffled with ``prepare.seed`` and cut in the split fractions, so the same data
    and seed always give the same rows in the same order.

    Raises:
        ValueError: Too few rows for every split to hold at least one row.
    """
    _sizes(len(frame), params)
    rng = np.random.default_rng(params.seed)
    labels = contract.labels(frame)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for value in (0, 1):
        index = rng.permutation(np.flatnonzero(labels == value))
        n_test = round(len(index) * params.test_fraction)
        n_valid = round(len(index) * params.valid_fraction)
        n_train = len(index) - n_valid - n_test
        parts["train"].append(index[:n_train])
        parts["valid"].append(index[n_train : n_train + n_valid])
        parts["test"].append(index[n_train + n_valid :])
    out = {}
    for name in SPLITS:
        rows = np.sort(np.concatenate(parts[name]))
        if len(rows) == 0:
            raise ValueError(f"{len(frame)} rows are too few to split into train/valid/test")
        out[name] = frame.iloc[rows].reset_index(drop=True)
    return out


def split(
    frame: pd.DataFrame, params: PrepareParams, contract: Contract
) -> dict[str, pd.DataFrame]:
    """The contract's split: by time when it names an event-time column, else stratified."""
    if contract.time:
        return split_by_time(frame, params, contract)
    return split_stratified(frame, params, contract)


def reference_sample(
    train: pd.DataFrame, params: PrepareParams, contract: Contract
) -> pd.DataFrame:
    """A seeded sample of the training split's features, encoded as the server logs them.

    Returns:
        One float32 column per feature (contract order) and the label as 0/1 under its own name.
    """
    rows = min(params.reference_rows, len(train))
    rng = np.random.default_rng(params.seed)
    index = np.sort(rng.choice(len(train), size=rows, replace=False))
    sample = train.iloc[index]
    reference = pd.DataFrame(contract.to_matrix(sample), columns=list(contract.feature_names))
    reference[contract.label.column] = contract.labels(sample)
    return reference


def read_data(data_dir: Path) -> pd.DataFrame:
    """Every Parquet file under ``data_dir``, concatenated in file-name order.

    Raises:
        FileNotFoundError: No Parquet files.
    """
    files = sorted(data_dir.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no Parquet files to prepare")
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def prepare(data_dir: Path, out_dir: Path, params: PrepareParams, contract: Contract) -> SplitSizes:
    """Read the validated raw data, write the splits and the reference sample as Parquet."""
    frame = read_data(data_dir)
    splits = split(frame, params, contract)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        part.to_parquet(out_dir / f"{name}.parquet", index=False)
    reference = reference_sample(splits["train"], params, contract)
    reference.to_parquet(out_dir / "reference.parquet", index=False)
    sizes = SplitSizes(*(len(splits[s]) for s in SPLITS))
    log.info(
        "split %d rows (%s): %s", len(frame), "by time" if contract.time else "stratified", sizes
    )
    return sizes
