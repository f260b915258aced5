"""The prepared splits, read one Parquet row group at a time, encoded with the contract.

``prepare`` writes each split with one row group per raw-data partition
(:mod:`argosy.data.prepare`), so a row group is as large as the raw data's writer made it,
whatever the split's size. Training reads nothing else: the training matrix is quantized from
:class:`SplitIter`'s batches (:func:`training_matrix`), so it holds the quantized matrix (in
memory, or in pages on disk) and one batch, never the split's rows; the validation matrix holds
at most ``train.early_stopping_rows`` of the validation split's rows (see :func:`eval_matrix`);
predictions and the ONNX parity check go batch by batch; row counts come from the Parquet footer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import xgboost as xgb

from argosy.data.contract import Contract


def row_count(path: Path) -> int:
    """Rows in a split, from its footer."""
    with pq.ParquetFile(path) as parquet:
        return parquet.metadata.num_rows


def row_groups(path: Path) -> int:
    """Row groups in a split, from its footer."""
    with pq.ParquetFile(path) as parquet:
        return parquet.num_row_groups


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
    each pass reads and encodes the row groups again rather than keeping them. ``groups`` limits
    it to some row groups (a Dask worker's share, :mod:`argosy.training.distributed`).
    """

    def __init__(
        self,
        path: Path,
        contract: Contract,
        groups: Sequence[int] | None = None,
        cache: Path | None = None,
    ) -> None:
        """Open the split; nothing is read until XGBoost asks for a batch.

        ``cache``: where ``xgboost.ExtMemQuantileDMatrix`` writes its pages (a path prefix).
        """
        self._parquet = _open(path, contract)
        self._contract = contract
        self._groups = list(range(self._parquet.num_row_groups) if groups is None else groups)
        self._next = 0
        super().__init__(cache_prefix=None if cache is None else str(cache), release_data=True)

    def reset(self) -> None:
        """Start again from the first row group."""
        self._next = 0

    def next(self, input_data: Callable[..., None]) -> bool:
        """Hand XGBoost the next row group; False after the last one."""
        if self._next == len(self._groups):
            return False
        features, labels = _encoded(self._parquet, self._groups[self._next], self._contract)
        input_data(data=features, label=labels)
        self._next += 1
        return True


def eval_stride(rows: int, limit: int) -> int:
    """Every how many validation rows early stopping scores one, to score at most ``limit``."""
    return max(1, -(-rows // limit))


@contextmanager
def page_cache(external_memory: bool, device: str) -> Iterator[Path | None]:
    """Where :func:`training_matrix` keeps its pages: a temporary directory, removed after.

    None (in memory) unless ``train.external_memory`` is on and the device is the CPU: a GPU
    keeps its own compressed matrix in device memory.
    """
    if not external_memory or device != "cpu":
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="argosy-xgboost-pages-") as cache:
        yield Path(cache)


def training_matrix(
    path: Path,
    contract: Contract,
    max_bin: int,
    cache_dir: Path | None,
    groups: Sequence[int] | None = None,
    nthread: int | None = None,
) -> xgb.DMatrix:
    """The quantized training matrix of a split (or of some of its row groups).

    ``max_bin`` must be the booster's: XGBoost refuses a matrix quantized with other bins. With a
    ``cache_dir`` it is an ``xgboost.ExtMemQuantileDMatrix``, whose pages XGBoost writes there and
    reads back each round (about 160 bytes a row on disk here), so the process does not hold the
    matrix; without, a ``QuantileDMatrix`` in memory. In memory, the example's 31 features (some
    missing) cost about 240 bytes a row on the CPU (measured: 850 MiB for 3.5M rows), 3.2 GiB at
    14M training rows; in pages, the process held 570 MiB less at 3.5M rows and trained 14% slower
    (docs/benchmarks.md "Scale").
    """
    data = SplitIter(path, contract, groups, None if cache_dir is None else cache_dir / "train")
    if cache_dir is None:
        return xgb.QuantileDMatrix(data, max_bin=max_bin, nthread=nthread)
    return xgb.ExtMemQuantileDMatrix(data, max_bin=max_bin, nthread=nthread)


def training_matrices(
    prepared_dir: Path, contract: Contract, max_bin: int, eval_rows: int, cache_dir: Path | None
) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    """The training matrix (:func:`training_matrix`) and the one early stopping scores."""
    dtrain = training_matrix(prepared_dir / "train.parquet", contract, max_bin, cache_dir)
    return dtrain, eval_matrix(prepared_dir / "valid.parquet", contract, eval_rows)


def eval_matrix(
    path: Path, contract: Contract, eval_rows: int, groups: Sequence[int] | None = None
) -> xgb.DMatrix:
    """The validation rows early stopping scores: every k-th of the split, at most ``eval_rows``.

    A plain ``DMatrix`` (its features, 8 bytes a value): XGBoost scores an evaluation
    ``QuantileDMatrix`` after every round more slowly (dmlc/xgboost#10793), about a third of each
    round's time at 5M rows here, for the same metric values. The rows are every k-th row of the
    split in file order (``train.early_stopping_rows``), so the whole validation period is scored
    in a bounded amount of memory, whatever the data. ``groups`` keeps those of some row groups
    only: the Dask workers' shares together are the local engine's rows.
    """
    with _open(path, contract) as parquet:
        sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        stride = eval_stride(int(starts[-1]), eval_rows)
        chosen = range(len(sizes)) if groups is None else groups
        # The rows at multiples of the stride in each chosen row group's [start, end).
        multiples = -(-starts // stride)  # how many multiples lie below each start
        counts = [int(multiples[g + 1] - multiples[g]) for g in chosen]
        features = np.empty((sum(counts), len(contract.specs)), dtype=np.float32)
        labels = np.empty(len(features), dtype=np.int8)
        filled = 0
        for group, count in zip(chosen, counts, strict=True):
            if count == 0:
                continue
            batch, batch_labels = _encoded(parquet, group, contract)
            picked = slice(-int(starts[group]) % stride, None, stride)
            features[filled : filled + count] = batch[picked]
            labels[filled : filled + count] = batch_labels[picked]
            filled += count
    return xgb.DMatrix(features, label=labels)


def predict(booster: xgb.Booster, path: Path, contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    """The booster's scores on a split and its labels, predicted one row group at a time."""
    scores, labels = [], []
    for features, batch_labels in batches(path, contract):
        scores.append(booster.inplace_predict(features))
        labels.append(batch_labels)
    return np.concatenate(scores), np.concatenate(labels)
