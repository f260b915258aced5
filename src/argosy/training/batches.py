"""The prepared splits, read one Parquet row group at a time, encoded with the contract.

``prepare`` writes each split with one row group per raw-data partition
(:mod:`argosy.data.prepare`), so a row group is as large as the raw data's writer made it,
whatever the split's size. Training reads nothing else: the training matrix is an
``xgboost.QuantileDMatrix`` fed by :class:`SplitIter`, so it holds the quantized matrix and one
batch, never the split's rows; the validation matrix holds the validation split's features (see
:func:`training_matrices`); predictions and the ONNX parity check go batch by batch; row counts
come from the Parquet footer.
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


def _open(path: Path, contract: Contract) -> pq.ParquetFile:
    """A split whose categorical features read as dictionaries (pandas categoricals).

    The encoder then matches each row group's few distinct values instead of every row's.
    """
    categorical = [spec.name for spec in contract.specs if spec.categorical]
    return pq.ParquetFile(path, read_dictionary=categorical)


def _encoded(
    parquet: pq.ParquetFile, index: int, contract: Contract
) -> tuple[np.ndarray, np.ndarray]:
    columns = [*contract.feature_names, contract.label.column]
    frame = parquet.read_row_group(index, columns=columns).to_pandas()
    return contract.to_matrix(frame), contract.labels(frame)


def batches(path: Path, contract: Contract) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(features, labels) of each row group of a split, in file order."""
    with _open(path, contract) as parquet:
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
        self._parquet = _open(path, contract)
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


def eval_stride(rows: int, limit: int) -> int:
    """Every how many validation rows early stopping scores one, to score at most ``limit``."""
    return max(1, -(-rows // limit))


def training_matrices(
    prepared_dir: Path, contract: Contract, max_bin: int, eval_rows: int
) -> tuple[xgb.QuantileDMatrix, xgb.DMatrix]:
    """The quantized training matrix and the validation matrix that early stopping scores.

    ``max_bin`` must be the booster's: XGBoost refuses a matrix quantized with other bins. The
    validation matrix is a plain ``DMatrix`` (its features, 8 bytes a value): XGBoost scores an
    evaluation ``QuantileDMatrix`` after every round more slowly (dmlc/xgboost#10793), about a
    third of each round's time at 5M rows here, for the same metric values. It holds at most
    ``eval_rows`` rows (``train.early_stopping_rows``: every k-th row of a larger split, so the
    whole validation period is scored) and so a bounded amount of memory, whatever the data.
    """
    dtrain = xgb.QuantileDMatrix(
        SplitIter(prepared_dir / "train.parquet", contract), max_bin=max_bin
    )
    path = prepared_dir / "valid.parquet"
    rows = row_count(path)
    stride = eval_stride(rows, eval_rows)
    features = np.empty((-(-rows // stride), len(contract.specs)), dtype=np.float32)
    labels = np.empty(len(features), dtype=np.int8)
    start = filled = 0
    for batch, batch_labels in batches(path, contract):
        first = -start % stride  # the batch's first row at a multiple of the stride
        picked = slice(first, None, stride)
        n = len(batch[picked])
        features[filled : filled + n] = batch[picked]
        labels[filled : filled + n] = batch_labels[picked]
        filled += n
        start += len(batch)
    return dtrain, xgb.DMatrix(features, label=labels)


def predict(booster: xgb.Booster, path: Path, contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    """The booster's scores on a split and its labels, predicted one row group at a time."""
    scores, labels = [], []
    for features, batch_labels in batches(path, contract):
        scores.append(booster.inplace_predict(features))
        labels.append(batch_labels)
    return np.concatenate(scores), np.concatenate(labels)
