"""The prepared splits, read one Parquet row group at a time, encoded with the contract.

``prepare`` writes each split with one row group per raw-data partition
(:mod:`argosy.data.prepare`), so a row group is as large as the raw data's writer made it,
whatever the split's size. Training reads nothing else: the training and validation matrices are
``xgboost.QuantileDMatrix`` objects fed by :class:`SplitIter`, so they hold the quantized matrix
and one batch, never the split's rows; predictions and the ONNX parity check go batch by batch;
row counts come from the Parquet footer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import xgboost as xgb

from argosy.data.contract import Contract


def row_count(path: Path) -> int:
    """Rows in a split, from its footer."""
    with pq.ParquetFile(path) as parquet:
        return parquet.metadata.num_rows


def _encoded(
    parquet: pq.ParquetFile, index: int, contract: Contract
) -> tuple[np.ndarray, np.ndarray]:
    columns = [*contract.feature_names, contract.label.column]
    frame = parquet.read_row_group(index, columns=columns).to_pandas()
    return contract.to_matrix(frame), contract.labels(frame)


def batches(path: Path, contract: Contract) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(features, labels) of each row group of a split, in file order."""
    with pq.ParquetFile(path) as parquet:
        for index in range(parquet.num_row_groups):
            yield _encoded(parquet, index, contract)


def positives(path: Path, contract: Contract) -> int:
    """Positive labels in a split, reading the label column only."""
    column = [contract.label.column]
    with pq.ParquetFile(path) as parquet:
        groups = range(parquet.num_row_groups)
        labels = (contract.labels(parquet.read_row_group(i, column).to_pandas()) for i in groups)
        return sum(int(batch.sum()) for batch in labels)


class SplitIter(xgb.DataIter):
    """A split for ``xgboost.QuantileDMatrix``, one row group per batch.

    XGBoost passes over the data several times to build the quantiles and the quantized matrix;
    each pass reads and encodes the row groups again rather than keeping them.
    """

    def __init__(self, path: Path, contract: Contract) -> None:
        """Open the split; nothing is read until XGBoost asks for a batch."""
        self._parquet = pq.ParquetFile(path)
        self._contract = contract
        self._next = 0
        super().__init__(release_data=True)

    def reset(self) -> None:
        """Start again from the first row group."""
        self._next = 0

    def next(self, input_data: Callable[..., None]) -> bool:
        """Hand XGBoost the next row group; False after the last one."""
        if self._next == self._parquet.num_row_groups:
            return False
        features, labels = _encoded(self._parquet, self._next, self._contract)
        input_data(data=features, label=labels)
        self._next += 1
        return True


def quantile_matrices(
    prepared_dir: Path, contract: Contract, max_bin: int
) -> tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix]:
    """The training matrix and the validation one, quantized with the training split's cuts.

    ``max_bin`` must be the booster's: XGBoost refuses a matrix quantized with other bins.
    """
    dtrain = xgb.QuantileDMatrix(
        SplitIter(prepared_dir / "train.parquet", contract), max_bin=max_bin
    )
    dvalid = xgb.QuantileDMatrix(
        SplitIter(prepared_dir / "valid.parquet", contract), max_bin=max_bin, ref=dtrain
    )
    return dtrain, dvalid


def predict(booster: xgb.Booster, path: Path, contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    """The booster's scores on a split and its labels, predicted one row group at a time."""
    scores, labels = [], []
    for features, batch_labels in batches(path, contract):
        scores.append(booster.inplace_predict(features))
        labels.append(batch_labels)
    return np.concatenate(scores), np.concatenate(labels)
