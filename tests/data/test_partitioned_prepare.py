"""`prepare` reads and writes partition by partition and splits as the whole data set would.

Small simulated data written as several files of several row groups; the reference for the time
split is a stable sort of all rows concatenated, cut at the split sizes (what prepare did on the
whole frame). A ``row_number`` column, ignored by the contract, tracks each row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from argosy.config import Params, PrepareParams
from argosy.data.contract import Contract
from argosy.data.prepare import SPLITS, prepare

from ..rowgroups import Reads

GROUP = 700


@pytest.fixture(scope="module")
def frame(small_frame: pd.DataFrame) -> pd.DataFrame:
    rows = small_frame.iloc[:6_000].reset_index(drop=True)
    return rows.assign(row_number=np.arange(len(rows)))


@pytest.fixture
def settings(params: Params) -> PrepareParams:
    return params.prepare.model_copy(update={"reference_rows": 500})


def write(frames: list[pd.DataFrame], data: Path) -> Path:
    data.mkdir(parents=True)
    for number, part in enumerate(frames):
        table = pa.Table.from_pandas(part, preserve_index=False)
        pq.write_table(table, data / f"part-{number}.parquet", row_group_size=GROUP)
    return data


def whole_time_split(
    files: list[pd.DataFrame], settings: PrepareParams, contract: Contract
) -> dict[str, pd.DataFrame]:
    """All rows in file order, stably sorted by (time, id), cut at the split sizes."""
    keys = [c for c in (contract.time, contract.id) if c]
    ordered = pd.concat(files, ignore_index=True).sort_values(keys, kind="stable")
    n = len(ordered)
    n_test, n_valid = round(n * settings.test_fraction), round(n * settings.valid_fraction)
    n_train = n - n_valid - n_test
    cuts = [0, n_train, n_train + n_valid, n]
    return {s: ordered.iloc[cuts[i] : cuts[i + 1]] for i, s in enumerate(SPLITS)}


def rows_of(out: Path, split: str) -> np.ndarray:
    return pd.read_parquet(out / f"{split}.parquet")["row_number"].to_numpy()


def test_files_in_time_order_split_exactly_as_the_whole_sorted_data_set(
    tmp_path: Path, frame: pd.DataFrame, settings: PrepareParams, contract: Contract
) -> None:
    # Given three files that follow each other in time, of several row groups each
    files = [frame.iloc[:2_500], frame.iloc[2_500:4_000], frame.iloc[4_000:]]
    data = write(files, tmp_path / "data")
    # When prepared
    sizes = prepare(data, tmp_path / "out", settings, contract)
    # Then every split holds the whole data set's sorted rows, in that order
    whole = whole_time_split(files, settings, contract)
    assert (sizes.train, sizes.valid, sizes.test) == tuple(len(whole[s]) for s in SPLITS)
    for split in SPLITS:
        assert rows_of(tmp_path / "out", split).tolist() == whole[split]["row_number"].tolist()
    # And the columns and dtypes are the raw data's
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert train.dtypes.to_dict() == pd.read_parquet(data).dtypes.to_dict()


@pytest.mark.parametrize("with_id", [True, False], ids=["ties-by-id", "ties-by-row"])
def test_shuffled_files_and_tied_times_split_by_rank(
    tmp_path: Path,
    frame: pd.DataFrame,
    settings: PrepareParams,
    contract: Contract,
    with_id: bool,
) -> None:
    # Given event times rounded to the day (hundreds of rows share each time, so do the cut
    # rows) in files whose times overlap and are out of order, with or without an id
    daily = frame.assign(timestamp=frame["timestamp"].dt.floor("D"))
    files = [
        daily.iloc[3_000:],
        daily.iloc[:1_000],
        daily.iloc[1_000:3_000].sample(frac=1, random_state=3),
    ]
    chosen = contract if with_id else contract.model_copy(update={"id": None})
    data = write(files, tmp_path / "data")
    # When prepared
    prepare(data, tmp_path / "out", settings, chosen)
    # Then each split holds exactly the rows a stable sort of the whole data set puts there
    whole = whole_time_split(files, settings, chosen)
    for split in SPLITS:
        assert sorted(rows_of(tmp_path / "out", split)) == sorted(whole[split]["row_number"])
    # And the split is a cut in time: nothing in train is later than anything in valid or test
    times = {s: pd.read_parquet(tmp_path / "out" / f"{s}.parquet")["timestamp"] for s in SPLITS}
    assert times["train"].max() <= times["valid"].min()
    assert times["valid"].max() <= times["test"].min()


def test_reads_and_writes_one_row_group_at_a_time(
    tmp_path: Path,
    frame: pd.DataFrame,
    settings: PrepareParams,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two files of 700-row groups
    data = write([frame.iloc[:3_000], frame.iloc[3_000:]], tmp_path / "data")
    reads = Reads(monkeypatch)
    # When prepared
    prepare(data, tmp_path / "out", settings, contract)
    monkeypatch.undo()
    # Then no read held more than one row group
    assert reads.rows
    assert max(reads.rows) <= GROUP
    # And each split is one file of row groups no larger than an input partition
    for split in SPLITS:
        meta = pq.ParquetFile(tmp_path / "out" / f"{split}.parquet").metadata
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert max(groups) <= GROUP
        assert sum(groups) == meta.num_rows


def no_time(contract: Contract) -> Contract:
    return contract.model_copy(update={"time": None, "time_range": None})


def test_stratified_split_keeps_the_positive_rate_and_is_reproducible(
    tmp_path: Path, frame: pd.DataFrame, settings: PrepareParams, contract: Contract
) -> None:
    # Given data without an event time, in several partitions, with a rare positive class
    data = write([frame.iloc[:2_000], frame.iloc[2_000:]], tmp_path / "data")
    chosen = no_time(contract)
    labels = chosen.labels(frame)
    # When prepared twice with one seed, and once with another
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        prepare(data, tmp_path / name, settings.model_copy(update={"seed": seed}), chosen)
    # Then each class is cut in the split fractions, so every split keeps the positive rate
    for value in (0, 1):
        n = int((labels == value).sum())
        expected = {"test": round(n * settings.test_fraction)}
        expected["valid"] = round(n * settings.valid_fraction)
        expected["train"] = n - expected["valid"] - expected["test"]
        for split in SPLITS:
            got = chosen.labels(pd.read_parquet(tmp_path / "a" / f"{split}.parquet"))
            assert int((got == value).sum()) == expected[split]
    # And every row lands in exactly one split
    everything = np.concatenate([rows_of(tmp_path / "a", s) for s in SPLITS])
    assert sorted(everything) == list(range(len(frame)))
    # And the same seed gives the same files, another seed other rows
    for split in (*SPLITS, "reference"):
        same = (tmp_path / "a" / f"{split}.parquet").read_bytes()
        assert same == (tmp_path / "b" / f"{split}.parquet").read_bytes()
    assert set(rows_of(tmp_path / "a", "test")) != set(rows_of(tmp_path / "c", "test"))


def test_the_reference_is_a_seeded_sample_of_training_rows_from_every_partition(
    tmp_path: Path, frame: pd.DataFrame, settings: PrepareParams, contract: Contract
) -> None:
    # Given data in several partitions
    data = write([frame.iloc[:3_000], frame.iloc[3_000:]], tmp_path / "data")
    # When prepared twice
    for name in ("a", "b"):
        prepare(data, tmp_path / name, settings, contract)
    reference = pd.read_parquet(tmp_path / "a" / "reference.parquet")
    train = pd.read_parquet(tmp_path / "a" / "train.parquet")
    # Then it holds reference_rows distinct training rows, encoded as the server logs features
    assert len(reference) == settings.reference_rows
    assert list(reference.columns) == [*contract.feature_names, contract.label.column]
    encoded = pd.DataFrame(contract.to_matrix(train), columns=list(contract.feature_names))
    encoded[contract.label.column] = contract.labels(train)
    rows = encoded.fillna(-1.0).itertuples(index=False)  # missing features: NaN is not NaN
    position = {tuple(row): i for i, row in enumerate(rows)}
    chosen = [position[tuple(row)] for row in reference.fillna(-1.0).itertuples(index=False)]
    assert len(set(chosen)) == len(chosen)
    # And it draws on the whole training split, not one partition, in training order
    assert chosen == sorted(chosen)
    assert min(chosen) < len(train) // 4
    assert max(chosen) > 3 * len(train) // 4
    # And the same seed gives the same sample
    assert reference.equals(pd.read_parquet(tmp_path / "b" / "reference.parquet"))
