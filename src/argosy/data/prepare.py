"""The train/valid/test split and the drift reference sample, computed partition by partition.

With an event-time column in the contract the split is by time, not at random: a model is trained
on the past and scored on the future, as in production. Without one, the split is random, seeded
and stratified on the label, so every split keeps the data's positive rate. The reference sample
for drift monitoring comes from the training split, encoded exactly as the server logs features.

The raw data are read one partition (one Parquet row group, :mod:`argosy.data.partitions`) at a
time and the splits are written the same way: ``train.parquet``, ``valid.parquet`` and
``test.parquet`` are one file each, with one row group per partition that has rows in that split,
so a reader takes them whole (pandas) or row group by row group (Dask). No process holds more than
a partition and a few columns' worth of counts:

- By time, the rows are ranked by (time, id, row number), the order a stable sort of the whole
  data set gives. The event times at the two cut ranks are found exactly by narrowing a histogram
  of the time column over a few passes (that column only); only the rows at a cut's very time
  are ranked by id. Each partition's rows are written in (time, id) order, so files that follow
  each other in time give the whole data set's sorted order.
- Stratified, each class's rows per split are dealt to the partitions by a seeded multivariate
  hypergeometric draw (the counts a seeded shuffle of the whole data set gives, in
  distribution), then chosen within each partition by a generator seeded by the partition.
- The reference sample is ``reference_rows`` training rows without replacement, dealt to the
  partitions the same way.

The same files and seed give the same splits and reference, row for row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from argosy.config import PrepareParams
from argosy.data.contract import Contract
from argosy.data.partitions import DataSet, read, scan

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
BINS = 1 << 16
"""Histogram bins per pass of the time cut: 64-bit times resolve in at most four passes."""
# Independent random streams, each seeded by (prepare.seed, stream[, partition]).
_SPLIT_QUOTAS, _SPLIT_ROWS, _REFERENCE_QUOTAS, _REFERENCE_ROWS = range(4)


@dataclass(frozen=True)
class SplitSizes:
    """Row counts of each split."""

    train: int
    valid: int
    test: int


@dataclass
class _Plan:
    """Which split each row of each partition goes to.

    Attributes:
        counts: Rows per partition (axis 0) and split (axis 1); stratified, per class too (axis 2).
        bounds: By time: the first valid and the first test row's time (as :func:`_ordered`).
        ties: By time: per partition, the rows at a cut's exact time and the split of each.
    """

    counts: np.ndarray
    bounds: list[int] = field(default_factory=list)
    ties: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _sizes(n: int, params: PrepareParams) -> tuple[int, int, int]:
    n_test = round(n * params.test_fraction)
    n_valid = round(n * params.valid_fraction)
    n_train = n - n_valid - n_test
    if min(n_train, n_valid, n_test) < 1:
        raise ValueError(f"{n} rows are too few to split into train/valid/test")
    return n_train, n_valid, n_test


def _deal(totals: list[int], sizes: list[int], rng: np.random.Generator) -> np.ndarray:
    """Deal ``totals[k]`` items of each kind over partitions holding ``sizes`` items, at random.

    Returns:
        One row per partition, its count of each kind; each row sums to the partition's size.
    """
    left = np.array(totals, dtype=np.int64)
    out = np.zeros((len(sizes), len(totals)), dtype=np.int64)
    for i, size in enumerate(sizes):
        if size:
            out[i] = rng.multivariate_hypergeometric(left, size, method="marginals")
            left -= out[i]
    return out


# ---------------------------------------------------------------------------- by time


def _ordered(times: pa.ChunkedArray) -> np.ndarray:
    """Event times as unsigned integers in the same order, nulls last (as a sort puts them)."""
    try:
        raw = pc.fill_null(times.cast(pa.int64()), np.iinfo(np.int64).max)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ValueError(f"the time split needs a timestamp column, got {times.type}") from None
    # Flipping the sign bit maps int64 onto uint64 in order: no overflow in the arithmetic below.
    return raw.to_numpy().view(np.uint64) ^ np.uint64(1 << 63)


def _times(data: DataSet, column: str, index: int) -> np.ndarray:
    return _ordered(read(data.partitions[index], data.schema, [column]).column(0))


def _all_times(data: DataSet, column: str) -> Iterator[np.ndarray]:
    for index in range(len(data.partitions)):
        yield _times(data, column, index)


def _select(data: DataSet, column: str, ranks: list[int]) -> list[tuple[int, int]]:
    """For each rank, the time at that position of the sorted times, and how many times are less.

    Each pass counts the times inside every unresolved rank's window in :data:`BINS` bins and
    narrows the window to the bin that holds the rank, until the window is one value wide.
    """
    low, high = 2**64, -1
    for times in _all_times(data, column):
        if len(times):
            low, high = min(low, int(times.min())), max(high, int(times.max()))
    state = {k: [low, high, 0] for k in ranks}  # window [lo, hi] and the count below it
    while any(lo < hi for lo, hi, _ in state.values()):
        open_ = {k: s for k, s in state.items() if s[0] < s[1]}
        width = {k: -(-(hi - lo + 1) // BINS) for k, (lo, hi, _) in open_.items()}
        counts = {k: np.zeros(BINS, dtype=np.int64) for k in open_}
        for times in _all_times(data, column):
            for k, (lo, hi, _) in open_.items():
                inside = times[(times >= np.uint64(lo)) & (times <= np.uint64(hi))]
                bins = (inside - np.uint64(lo)) // np.uint64(width[k])
                counts[k] += np.bincount(bins.astype(np.int64), minlength=BINS)
        for k, s in open_.items():
            cumulative = np.cumsum(counts[k])
            b = int(np.searchsorted(cumulative, k - s[2], side="right"))
            s[2] += int(cumulative[b - 1]) if b else 0
            s[0] += b * width[k]
            s[1] = min(s[1], s[0] + width[k] - 1)
    return [(state[k][0], state[k][2]) for k in ranks]


def _plan_by_time(data: DataSet, contract: Contract, column: str, cuts: list[int]) -> _Plan:
    """Counts per split and the rows at each cut's exact time, ranked as a stable sort would."""
    found = _select(data, column, cuts)
    bounds = [time for time, _ in found]
    counts = np.zeros((len(data.partitions), len(SPLITS)), dtype=np.int64)
    tied: list[tuple[int, np.ndarray, np.ndarray]] = []  # (partition, rows, their time)
    for index, times in enumerate(_all_times(data, column)):
        at_cut = np.isin(times, bounds)
        codes = _codes(times, bounds)
        counts[index] += np.bincount(codes[~at_cut], minlength=len(SPLITS))
        if at_cut.any():
            tied.append((index, np.flatnonzero(at_cut), times[at_cut]))
    ties: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for time, below in dict(found).items():
        rows = [(i, r[t == time]) for i, r, t in tied if (t == time).any()]
        order = pa.table(
            {
                "id": pa.concat_arrays([_ids(data, contract, i, r) for i, r in rows]),
                "partition": np.concatenate([np.full(len(r), i) for i, r in rows]),
                "row": np.concatenate([r for _, r in rows]),
            }
        ).sort_by([("id", "ascending"), ("partition", "ascending"), ("row", "ascending")])
        rank = below + np.arange(order.num_rows)
        codes = (rank >= cuts[0]).astype(np.int8) + (rank >= cuts[1])
        partitions, positions = (order.column(c).to_numpy() for c in ("partition", "row"))
        for i in map(int, np.unique(partitions)):
            mine = partitions == i
            counts[i] += np.bincount(codes[mine], minlength=len(SPLITS))
            before = ties.get(i, (positions[:0], codes[:0]))
            ties[i] = (
                np.concatenate([before[0], positions[mine]]),
                np.concatenate([before[1], codes[mine]]),
            )
    return _Plan(counts, bounds, ties)


def _codes(times: np.ndarray, bounds: list[int]) -> np.ndarray:
    """0, 1 or 2 (train, valid, test) by time alone; rows at a cut's exact time are ranked apart."""
    first, second = (np.uint64(b) for b in bounds)
    return (times >= first).astype(np.int8) + (times >= second)


def _ids(data: DataSet, contract: Contract, index: int, rows: np.ndarray) -> pa.Array:
    if not contract.id:
        return pa.nulls(len(rows))
    ids = read(data.partitions[index], data.schema, [contract.id]).column(0)
    return ids.take(pa.array(rows)).combine_chunks()


# ---------------------------------------------------------------------------- stratified


def _labels(data: DataSet, contract: Contract, index: int) -> np.ndarray:
    table = read(data.partitions[index], data.schema, [contract.label.column])
    return contract.labels(table.to_pandas())


def _plan_stratified(data: DataSet, contract: Contract, params: PrepareParams) -> _Plan:
    """Each partition's rows per split and class, dealt at random from each class's quotas."""
    sizes = np.array(
        [np.bincount(_labels(data, contract, i), minlength=2) for i in range(len(data.partitions))]
    ).reshape(-1, 2)
    rng = np.random.default_rng([params.seed, _SPLIT_QUOTAS])
    quotas = []
    for value in (0, 1):
        n = int(sizes[:, value].sum())
        n_test = round(n * params.test_fraction)
        n_valid = round(n * params.valid_fraction)
        quotas.append(_deal([n - n_valid - n_test, n_valid, n_test], sizes[:, value].tolist(), rng))
    return _Plan(np.stack(quotas, axis=2))


def _stratified_codes(
    labels: np.ndarray, quotas: np.ndarray, params: PrepareParams, index: int
) -> np.ndarray:
    """The split of each row of one partition, given its quotas per split (axis 0) and class."""
    rng = np.random.default_rng([params.seed, _SPLIT_ROWS, index])
    codes = np.empty(len(labels), dtype=np.int8)
    for value in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == value))
        codes[rows] = np.repeat(np.arange(len(SPLITS), dtype=np.int8), quotas[:, value])
    return codes


# ---------------------------------------------------------------------------- writing


def _split_codes(
    table: pa.Table, plan: _Plan, contract: Contract, params: PrepareParams, index: int
) -> tuple[pa.Table, np.ndarray]:
    """One partition's rows in the order they are written, and the split of each."""
    if not contract.time:
        labels = contract.labels(table.select([contract.label.column]).to_pandas())
        return table, _stratified_codes(labels, plan.counts[index], params, index)
    codes = _codes(_ordered(table.column(contract.time)), plan.bounds)
    if index in plan.ties:
        rows, tied = plan.ties[index]
        codes[rows] = tied
    keys = [(c, "ascending") for c in (contract.time, contract.id) if c]
    order = pc.sort_indices(table, sort_keys=keys).to_numpy()  # stable: ties keep file order
    if (np.diff(order) == 1).all():  # already in order, as files written in time usually are
        return table, codes
    return table.take(pa.array(order)), codes[order]


def _reference(train: pa.Table, rows: int, params: PrepareParams, index: int) -> pd.DataFrame:
    """``rows`` of one partition's training rows, at random, in their order."""
    rng = np.random.default_rng([params.seed, _REFERENCE_ROWS, index])
    chosen = np.sort(rng.choice(train.num_rows, size=rows, replace=False))
    return train.take(pa.array(chosen)).to_pandas()


def prepare(data_dir: Path, out_dir: Path, params: PrepareParams, contract: Contract) -> SplitSizes:
    """Read the validated raw data, write the splits and the reference sample as Parquet.

    Raises:
        DataSetError: No Parquet files under ``data_dir``, or unreadable ones.
        ValueError: Too few rows for every split to hold at least one row.
    """
    data = scan(data_dir)
    n_train, n_valid, _ = _sizes(data.rows, params)
    if contract.time:
        plan = _plan_by_time(data, contract, contract.time, [n_train, n_train + n_valid])
        counts = plan.counts
    else:
        plan = _plan_stratified(data, contract, params)
        counts = plan.counts.sum(axis=2)
    totals = counts.sum(axis=0)
    if totals.min() < 1:
        raise ValueError(f"{data.rows} rows are too few to split into train/valid/test")
    wanted = min(params.reference_rows, int(totals[0]))
    rng = np.random.default_rng([params.seed, _REFERENCE_QUOTAS])
    sampled = _deal([wanted, int(totals[0]) - wanted], counts[:, 0].tolist(), rng)[:, 0]
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = {s: pq.ParquetWriter(out_dir / f"{s}.parquet", data.schema) for s in SPLITS}
    references = []
    try:
        for index, part in enumerate(data.partitions):
            table, codes = _split_codes(read(part, data.schema), plan, contract, params, index)
            for number, name in enumerate(SPLITS):
                piece = table.filter(pa.array(codes == number))
                if piece.num_rows:
                    writers[name].write_table(piece)
                if number == 0 and sampled[index]:
                    references.append(_reference(piece, int(sampled[index]), params, index))
    finally:
        for writer in writers.values():
            writer.close()
    reference = pd.concat(references, ignore_index=True)
    encoded = pd.DataFrame(contract.to_matrix(reference), columns=list(contract.feature_names))
    encoded[contract.label.column] = contract.labels(reference)
    encoded.to_parquet(out_dir / "reference.parquet", index=False)
    sizes = SplitSizes(*(int(t) for t in totals))
    log.info(
        "split %d rows in %d partition(s) (%s): %s",
        *(data.rows, len(data.partitions), "by time" if contract.time else "stratified", sizes),
    )
    return sizes
