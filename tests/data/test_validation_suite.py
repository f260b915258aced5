"""The Great Expectations suite catches each class of bad data, naming the expectation and rows."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from argosy import webassets
from argosy.data.contract import Contract, parse_contract
from argosy.examples.fraud.simulate import write_parquet
from argosy.validation.suite import DataValidationError, validate_dir

from ..conftest import REPO, venv_env


@pytest.fixture(scope="module")
def good(small_frame: pd.DataFrame) -> pd.DataFrame:
    return small_frame.iloc[:4000].copy()


def run(tmp_path: Path, frame: pd.DataFrame | None, contract: Contract, raw: bytes | None = None):
    data = tmp_path / "data"
    data.mkdir()
    if frame is not None:
        write_parquet(frame, data / "transactions.parquet")
    if raw is not None:
        (data / "transactions.parquet").write_bytes(raw)
    reports = tmp_path / "reports"
    return data, reports, lambda: validate_dir(data, contract, reports)


def test_good_data_passes_with_data_docs(
    tmp_path: Path, good: pd.DataFrame, contract: Contract
) -> None:
    _, reports, validate = run(tmp_path, good, contract)
    outcome = validate()
    assert outcome.success
    assert outcome.rows == 4000
    assert outcome.evaluated > 60
    result = json.loads((reports / "result.json").read_text())
    assert result["success"] is True
    assert result["failures"] == []
    assert (reports / "data_docs" / "index.html").stat().st_size > 1000


def resources_resolve(page: Path) -> list[str]:
    """Local scripts, stylesheets and images ``page`` loads that do not exist beside it."""
    missing = []
    for tag in re.finditer(r"<(script|link|img)\b[^>]*>", page.read_text()):
        if tag.group(1) == "link" and "stylesheet" not in tag.group(0):
            continue  # icons and other links do not change how the page renders
        ref = re.search(r"""(?:src|href)=["']([^"'#]+)["']""", tag.group(0))
        local = ref and not ref.group(1).startswith(("http", "data:"))
        if local and not (page.parent / ref.group(1)).exists():
            missing.append(ref.group(1))
    return missing


def test_data_docs_are_one_result_headed_by_the_verdict_and_render_offline(
    tmp_path: Path, good: pd.DataFrame, contract: Contract
) -> None:
    # Given data with one defect, validated with the data hash data.dvc would give
    bad = good.copy()
    bad.loc[bad.index[:3], "amount_usd"] = -1.0
    data = tmp_path / "data"
    data.mkdir()
    write_parquet(bad, data / "transactions.parquet")
    reports = tmp_path / "reports"
    with pytest.raises(DataValidationError):
        validate_dir(data, contract, reports, "0123abcd.dir")
    docs = reports / "data_docs"
    pages = sorted(docs.rglob("*.html"))
    results = sorted((docs / "validations").rglob("*.html"))
    # Then Data Docs hold one validation result for the whole run, named after the data
    assert len(results) == 1
    assert "data-0123abcd.dir" in str(results[0])
    assert "Data asset: data/ (4,000 rows, 0123abcd.dir)" in results[0].read_text()
    # And every page opens with the verdict: N of N expectations, the rows, the failure
    for page in pages:
        top = page.read_text().partition("<body>")[2].lstrip()[:3000]
        assert top.startswith('<div id="argosy-verdict"')
        assert "Data validation: FAILED" in top
        assert re.search(r"\d+ of \d+ expectations held on 4,000 rows", top)
        assert "amount_usd" in top
    # And no page loads anything from the network; every local asset it loads is there
    for page in pages:
        assert webassets.remote_resources(page.read_text()) == [], page
        assert resources_resolve(page) == [], page
    assert json.loads((reports / "result.json").read_text())["data_hash"] == "0123abcd.dir"


def _drop(f: pd.DataFrame) -> pd.DataFrame:
    return f.drop(columns=["cvv_match"])


def _dtype(f: pd.DataFrame) -> pd.DataFrame:
    f["amount_usd"] = f["amount_usd"].astype(str)
    return f


def _nulls(f: pd.DataFrame) -> pd.DataFrame:
    f.loc[f.index[:7], "amount_usd"] = None
    return f


def _range(f: pd.DataFrame) -> pd.DataFrame:
    f.loc[f.index[:3], "hour_of_day"] = 27
    return f


def _category(f: pd.DataFrame) -> pd.DataFrame:
    f.loc[f.index[:4], "channel"] = "carrier_pigeon"
    return f


def _duplicates(f: pd.DataFrame) -> pd.DataFrame:
    f.loc[f.index[1:6], "transaction_id"] = f["transaction_id"].iloc[0]
    return f


def _label_rate(f: pd.DataFrame) -> pd.DataFrame:
    f.loc[f.index[: len(f) // 5], "is_fraud"] = 1
    return f


def _timestamps(f: pd.DataFrame) -> pd.DataFrame:
    f.loc[f.index[:2], "timestamp"] = pd.Timestamp("2035-01-01", tz="UTC")
    return f


def _empty(f: pd.DataFrame) -> pd.DataFrame:
    return f.iloc[:0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop, r"expect_table_columns_to_match_set: missing columns \['cvv_match'\].*\[contract"),
        (_dtype, r"in_type_list\(amount_usd\).*\[contract\.yaml features\.amount_usd\.type\]"),
        (_nulls, r"expect_column_values_to_not_be_null\(amount_usd\): 7 rows.*\.nullable\]"),
        (
            _range,
            r"between\(hour_of_day\): 3 rows.*\[contract\.yaml features\.hour_of_day\.min/max",
        ),
        (_category, r"in_set\(channel\): 4 rows .*carrier_pigeon.*features\.channel\.values\]"),
        (_duplicates, r"expect_column_values_to_be_unique\(transaction_id\): 6 rows.*yaml id\]"),
        (_label_rate, r"mean_to_be_between\(is_fraud == 1\): observed 0\.2.*yaml label_rate\]"),
        (_timestamps, r"between\(timestamp\): 2 rows.*\[contract\.yaml time_range\]"),
        (_empty, r"expect_table_row_count_to_be_between: observed 0.*\[contract\.yaml rows\]"),
    ],
    ids=[
        "missing-column",
        "wrong-dtype",
        "nulls",
        "out-of-range",
        "unknown-category",
        "duplicate-ids",
        "label-rate",
        "timestamp-range",
        "empty-file",
    ],
)
def test_each_class_of_bad_data_is_named(
    tmp_path: Path,
    good: pd.DataFrame,
    contract: Contract,
    mutate: Callable[[pd.DataFrame], pd.DataFrame],
    expected: str,
) -> None:
    # Given good data with one class of defect
    _, reports, validate = run(tmp_path, mutate(good.copy()), contract)
    # When validated / Then it fails, naming the expectation and how many rows broke it
    with pytest.raises(DataValidationError, match=expected):
        validate()
    result = json.loads((reports / "result.json").read_text())
    assert result["success"] is False
    assert result["failures"]


@pytest.mark.parametrize(
    "cut", [0, 100, -200], ids=["zero-bytes", "truncated-head", "truncated-tail"]
)
def test_corrupt_parquet(tmp_path: Path, good: pd.DataFrame, contract: Contract, cut: int) -> None:
    # Given a Parquet file cut short
    write_parquet(good, tmp_path / "whole.parquet")
    whole = (tmp_path / "whole.parquet").read_bytes()
    _, reports, validate = run(tmp_path, None, contract, raw=whole[:cut] if cut else b"")
    # Then validation names the file as unreadable and writes no Data Docs
    with pytest.raises(DataValidationError, match=r"transactions\.parquet: not a readable Parquet"):
        validate()
    assert not (reports / "data_docs").exists()


def test_cli_exit_code_and_message(tmp_path: Path, good: pd.DataFrame) -> None:
    # Given bad data on disk / When `argosy validate` runs
    data, reports, _ = run(tmp_path, _category(good.copy()), None)  # type: ignore[arg-type]
    proc = subprocess.run(
        [
            "argosy",
            "validate",
            "--data",
            str(data),
            "--reports",
            str(reports),
            "--contract",
            str(REPO / "contract.yaml"),
        ],
        capture_output=True,
        text=True,
        env=venv_env(),
        timeout=300,
    )
    # Then it exits 1 and stderr names the expectation and the report
    assert proc.returncode == 1
    assert "expect_column_values_to_be_in_set(channel): 4 rows" in proc.stderr
    assert "result.json" in proc.stderr
    # And progress is one line per partition, naming the failures, not a bar per suite
    assert re.search(r"partition 1/1 transactions\.parquet row group 0: .*, 1 failed", proc.stderr)
    assert "Calculating Metrics" not in proc.stderr


def _contradicting(contract: Contract, edit: Callable[[dict], None]) -> Contract:
    raw = contract.model_dump(mode="json")
    edit(raw)
    return parse_contract(raw)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["features"].update(loyalty_tier={"type": "integer"}),
            r"missing columns \['loyalty_tier'\].*\[contract\.yaml features / other_columns",
        ),
        (
            lambda c: c["features"].update(currency={"type": "integer"}),
            r"in_type_list\(currency\).*\[contract\.yaml features\.currency\.type\]",
        ),
        (
            lambda c: c["label"].update(positive="yes", negative="no"),
            r"is_fraud.*\[contract\.yaml label",
        ),
    ],
    ids=["declared-column-missing", "wrong-type", "label-values"],
)
def test_a_contract_that_contradicts_the_data_names_column_and_key(
    tmp_path: Path, good: pd.DataFrame, contract: Contract, edit, expected: str
) -> None:
    # Given good data and a contract that says something else about it
    wrong = _contradicting(contract, edit)
    _, _, validate = run(tmp_path, good, wrong)
    # When validated / Then the failure names the column and the contract key to fix
    with pytest.raises(DataValidationError, match=expected):
        validate()


def test_a_nullable_string_categorical_without_an_event_time_passes(tmp_path: Path) -> None:
    # Given data with no event time, a hyphenated id, string labels and nulls in a categorical
    frame = pd.DataFrame(
        {
            "row-key": [f"r{i}" for i in range(200)],
            "plan-type": (["basic", "pro", None, "basic"] * 50),
            "tenure": list(range(200)),
            "churned": (["no", "no", "no", "yes"] * 50),
        }
    )
    contract = parse_contract(
        {
            "name": "churn",
            "source": "files",
            "id": "row-key",
            "time": None,
            "time_range": None,
            "other_columns": [],
            "slices": [],
            "label": {"column": "churned", "positive": "yes", "negative": "no"},
            "features": {
                "plan-type": {"type": "categorical", "values": ["basic", "pro"], "nullable": True},
                "tenure": {"type": "integer", "min": 0, "max": 1000},
            },
            "rows": {"min": 100, "max": 1000},
            "label_rate": {"min": 0.1, "max": 0.4},
            "metric": {"primary": "pr_auc", "floors": {}},
            "monitoring": {
                "min_rows": 10,
                "min_labelled_rows": 10,
                "min_positives": 1,
                "pr_auc_min": 0.1,
                "recall_min": 0.1,
            },
        }
    )
    _, _, validate = run(tmp_path, frame, contract)
    # When validated / Then it passes, including the positive rate of a string label
    outcome = validate()
    assert outcome.success, outcome.message()


def test_the_suite_runs_without_fingerprinting_its_batches(
    good: pd.DataFrame, contract: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pandas engine's per-batch hash (most of a partition's time after the checks) is off.

    Fails when a Great Expectations upgrade drops the constant that turns it off.
    """
    from great_expectations.execution_engine import pandas_execution_engine as engine

    from argosy.validation.expectations import SuiteRunner, build_expectations

    hashed: list[int] = []
    real = engine.hash_pandas_dataframe
    monkeypatch.setattr(engine, "hash_pandas_dataframe", lambda df: hashed.append(1) or real(df))
    runner = SuiteRunner(contract, [e for e, _ in build_expectations(contract)])
    frame = good.astype({c: pd.StringDtype("python") for c in good.select_dtypes(object)})
    # When the suite runs with the runner's settings, nothing is hashed
    results, _ = runner.run(frame)
    assert results
    assert hashed == []
    # And with the library's default threshold, every batch would be
    monkeypatch.setattr(engine, "HASH_THRESHOLD", 1e9)
    runner.run(frame)
    assert len(hashed) >= len(runner.definitions) - 1


def test_the_runner_gives_the_librarys_own_results_and_leaves_it_as_it_was(
    good: pd.DataFrame, contract: Contract
) -> None:
    """The runner's shortcuts change nothing in a result.

    It skips the store and builds each configuration once; each result still equals what
    ``ValidationDefinition.run`` gives, failures too.
    """
    from great_expectations.expectations.expectation import Expectation

    from argosy.validation.expectations import (
        RESULT_FORMAT,
        TABLE,
        SuiteRunner,
        build_expectations,
    )

    property_before = Expectation.__dict__["configuration"]
    runner = SuiteRunner(contract, [e for e, _ in build_expectations(contract)])
    # Given data with failures of several kinds (nulls, a range, a category)
    frame = _category(_range(_nulls(good.copy())))
    frame = frame.astype({c: pd.StringDtype("python") for c in frame.select_dtypes(object)})
    # When the runner validates it
    ours, _ = runner.run(frame)
    # Then every result equals the library's own run of the same definition on the same batch
    theirs = {}
    for name, definition in runner.definitions.items():
        batch = frame if name == TABLE else frame[[name]] if name in frame else None
        if batch is None:  # the label's derived column: compared through `ours` below
            continue
        run = definition.run(batch_parameters={"dataframe": batch}, result_format=RESULT_FORMAT)
        theirs |= {(name, r.expectation_config.type): r.to_json_dict() for r in run.results}
    assert theirs
    for key, expected in theirs.items():
        assert ours[key].to_json_dict() == expected, key
    assert sum(not r.success for r in ours.values()) >= 3
    # And the library's configuration property is its own again
    assert Expectation.__dict__["configuration"] is property_before
