"""Validation partition by partition gives the verdict the whole data set would, naming partitions.

The same small data set is written as several files of several row groups (one partition each) and
validated partitioned, on a real two-worker LocalCluster; Great Expectations' own results on the
same rows as one frame are the reference.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from argosy.data.contract import Contract
from argosy.data.partitions import scan
from argosy.validation import partitioned
from argosy.validation.expectations import SuiteRunner, build_expectations, key_of
from argosy.validation.partitioned import STRINGS, evaluate, id_keys
from argosy.validation.suite import DataValidationError, validate_dir

GROUP = 1_000


@pytest.fixture(scope="module")
def good(small_frame: pd.DataFrame) -> pd.DataFrame:
    return small_frame.iloc[:5_000].reset_index(drop=True)


def write(frames: dict[str, pd.DataFrame], data: Path) -> Path:
    """One file per frame, row groups of GROUP rows: partitions of 1,000 rows or fewer."""
    data.mkdir(parents=True)
    for name, frame in frames.items():
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, data / name, row_group_size=GROUP)
    return data


def split(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Two files, 2,500 rows each: partitions of 1,000, 1,000 and 500 rows in each."""
    return {"a.parquet": frame.iloc[:2_500], "b.parquet": frame.iloc[2_500:]}


def whole_results(data: Path, contract: Contract) -> dict:
    """Great Expectations' results on every file concatenated into one frame."""
    tables = [pq.read_table(path) for path in sorted(data.glob("*.parquet"))]
    table = pa.concat_tables(tables, promote_options="default")
    frame = table.to_pandas(types_mapper=STRINGS.get)
    naive = contract.time in frame and frame[contract.time].dt.tz is None
    suite = build_expectations(contract, bool(naive))
    results, _ = SuiteRunner(contract, [e for e, _ in suite]).run(frame)
    return {k: plain(r) for k, r in results.items()}


def plain(result) -> dict:
    """A result as reports show it, the first unexpected values' counts as totals per value.

    Great Expectations counts each missing value among them apart (NaN is not NaN); the merge
    counts them together.
    """
    data = result.to_json_dict()
    info = dict(data["result"])
    if "partial_unexpected_counts" in info:
        totals: Counter[str] = Counter()
        for entry in info["partial_unexpected_counts"]:
            totals[json.dumps(entry["value"])] += entry["count"]
        info["partial_unexpected_counts"] = totals
    return {"success": data["success"], "result": info}


def _good(f: pd.DataFrame) -> pd.DataFrame:
    return f


def _defects_in_several_partitions(f: pd.DataFrame) -> pd.DataFrame:
    f.loc[[10, 3_200], "transaction_id"] = f.loc[4_900, "transaction_id"]  # across both files
    f.loc[[5, 1_500, 4_999], "amount_usd"] = None
    f.loc[[7, 2_600, 2_601, 4_100], "hour_of_day"] = 27
    f.loc[[1_200, 3_000], "channel"] = "carrier_pigeon"
    f.loc[[2_400], "timestamp"] = pd.Timestamp("2035-01-01", tz="UTC")
    return f


def _label_rate(f: pd.DataFrame) -> pd.DataFrame:
    f.loc[f.index[::4], "is_fraud"] = 1
    return f


def _empty(f: pd.DataFrame) -> pd.DataFrame:
    return f.iloc[:0]


@pytest.mark.parametrize(
    "mutate",
    [_good, _defects_in_several_partitions, _label_rate, _empty],
    ids=["good", "defects-in-several-partitions", "label-rate", "empty"],
)
def test_partitioned_results_equal_the_whole_data_sets(
    tmp_path: Path,
    good: pd.DataFrame,
    contract: Contract,
    mutate: Callable[[pd.DataFrame], pd.DataFrame],
) -> None:
    # Given one data set, written as two files of three row groups each
    data = write(split(mutate(good.copy())), tmp_path / "data")
    # When it is validated partition by partition, and as one frame by Great Expectations
    evaluated, unreadable = evaluate(scan(data), contract, workers=2)
    whole = whole_results(data, contract)
    # Then every expectation gets the same verdict, counts, percentages and first unexpected
    # values and rows, and no expectation is missing or extra
    assert unreadable == []
    partitioned = {key_of(e.expectation): plain(e.result) for e in evaluated}
    assert set(partitioned) == set(whole)
    for key, result in partitioned.items():
        assert result == whole[key], key


def test_the_verdict_and_counts_in_result_json_match_the_whole_run(
    tmp_path: Path, good: pd.DataFrame, contract: Contract
) -> None:
    # Given the same defective rows, as one file of one row group and as six partitions
    bad = _defects_in_several_partitions(good.copy())
    one = tmp_path / "one"
    one.mkdir()
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), one / "all.parquet")
    many = write(split(bad), tmp_path / "many")
    # When each is validated
    reports = {}
    for name, data in (("one", one), ("many", many)):
        with pytest.raises(DataValidationError):
            validate_dir(data, contract, tmp_path / f"reports-{name}")
        reports[name] = json.loads((tmp_path / f"reports-{name}" / "result.json").read_text())
    # Then both fail the same expectations with the same counts; only the partitions differ
    assert reports["one"]["partitions"] == 1
    assert reports["many"]["partitions"] == 6
    assert reports["one"]["expectations"] == reports["many"]["expectations"]
    counts = {
        name: [(f["expectation"], f.get("column"), f["unexpected_count"]) for f in r["failures"]]
        for name, r in reports.items()
    }
    assert counts["one"] == counts["many"]
    assert ("expect_column_values_to_be_unique", "transaction_id", 3) in counts["many"]


def test_a_bad_row_in_one_partition_fails_naming_that_partition(
    tmp_path: Path, good: pd.DataFrame, contract: Contract
) -> None:
    # Given six partitions, one with a single out-of-range value (b.parquet's second row group)
    bad = good.copy()
    bad.loc[2_500 + GROUP + 17, "hour_of_day"] = 24
    data = write(split(bad), tmp_path / "data")
    reports = tmp_path / "reports"
    # When validated / Then it fails naming the expectation, the row count and the partition
    expected = r"between\(hour_of_day\): 1 rows.*; in b\.parquet row group 1 \(1 rows\) \[contract"
    with pytest.raises(DataValidationError, match=expected):
        validate_dir(data, contract, reports, "0123abcd.dir")
    result = json.loads((reports / "result.json").read_text())
    [failure] = result["failures"]
    assert failure["partitions"] == [{"partition": "b.parquet row group 1", "unexpected_count": 1}]
    # And Data Docs hold one validation result for the whole data set, naming the partition
    pages = sorted((reports / "data_docs" / "validations").rglob("*.html"))
    assert len(pages) == 1
    text = pages[0].read_text()
    assert "6 partition(s)" in text
    assert "b.parquet row group 1 (1 rows)" in text
    assert "Data asset: data/ (5,000 rows, 0123abcd.dir)" in text


@pytest.mark.parametrize("shuffle", ["tasks", "p2p"])
def test_ids_repeated_only_across_files_fail_naming_both(
    tmp_path: Path, good: pd.DataFrame, contract: Contract, shuffle: str, monkeypatch
) -> None:
    # Given two files each unique in itself, sharing one id, and either shuffle of the ids
    monkeypatch.setattr(partitioned, "TASK_SHUFFLE_PARTITIONS", 1000 if shuffle == "tasks" else 0)
    bad = good.copy()
    bad.loc[4_000, "transaction_id"] = bad.loc[100, "transaction_id"]
    data = write(split(bad), tmp_path / "data")
    # When validated / Then the unique-id expectation fails for both rows, in both partitions
    with pytest.raises(DataValidationError, match=r"be_unique\(transaction_id\): 2 rows"):
        validate_dir(data, contract, tmp_path / "reports")
    result = json.loads((tmp_path / "reports" / "result.json").read_text())
    [failure] = result["failures"]
    assert failure["partitions"] == [
        {"partition": "a.parquet row group 0", "unexpected_count": 1},
        {"partition": "b.parquet row group 1", "unexpected_count": 1},
    ]


def test_a_row_group_that_cannot_be_decoded_is_named(
    tmp_path: Path, good: pd.DataFrame, contract: Contract
) -> None:
    # Given a file whose footer reads but whose first row group's pages are garbage
    data = write(split(good), tmp_path / "data")
    raw = bytearray((data / "a.parquet").read_bytes())
    raw[4:2_000] = bytes(1_996)
    (data / "a.parquet").write_bytes(bytes(raw))
    # When validated / Then it fails naming the partition, and writes no Data Docs
    with pytest.raises(DataValidationError, match=r"a\.parquet row group 0: not readable"):
        validate_dir(data, contract, tmp_path / "reports")
    assert not (tmp_path / "reports" / "data_docs").exists()


@pytest.mark.parametrize(
    "values",
    [
        ["tx-1", "", "tx-2", "tx-1", "é", "", "tx-10" * 40],
        [b"\x00a", b"a", b"\x00a", b""],
        [7, -1, 7, 2**40],
        [0.5, float("nan"), 0.5],
    ],
    ids=["string", "binary", "integer", "float"],
)
def test_the_id_shuffle_key_is_equal_exactly_for_equal_ids(values: list) -> None:
    """Equal ids meet in one shuffle partition, wherever their array starts in its buffers.

    The keys of different ids may collide (only the balance would suffer), but rarely.
    """
    array = pa.array(values)
    shifted = pa.array([values[0], *values]).slice(1)
    keys = id_keys(array)
    assert list(keys) == list(id_keys(shifted))
    if pa.types.is_string(array.type):
        assert list(keys) == list(id_keys(array.cast(pa.large_string())))
    by_value: dict = {}
    for value, key in zip(array.to_pylist(), keys, strict=True):
        by_value.setdefault(repr(value), set()).add(int(key))
    assert all(len(k) == 1 for k in by_value.values())
    assert len({next(iter(k)) for k in by_value.values()}) == len(by_value)
    many = id_keys(pa.array([f"tx-{i}" for i in range(100_000)]))
    assert len(set(many.tolist())) == 100_000
    assert min(Counter((many % 4).tolist()).values()) > 24_000  # the partitions stay balanced
