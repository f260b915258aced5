"""`argosy init` drafts a contract that loads, matches the data's columns, and fails clearly."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from typer.testing import CliRunner

from argosy.cli.data import init_command
from argosy.data.contract import load_contract, parse_contract
from argosy.data.profile import InitError, draft_contract, init_contract, slug
from argosy.data.synthetic import synthesize

REPO = Path(__file__).resolve().parents[2]
ODD_NAMES = ("hours-per-week", "odd name: x", "yes", "123")


def mixed_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Every column type, nulls, odd names, a long tail, free text and YAML's special words."""
    rng = np.random.default_rng(seed)
    tail = np.array([f"rare-{i}" for i in range(6)], dtype=object)
    country = rng.choice(["US", "MX", "CA"], rows).astype(object)
    country[:6] = tail
    kids = rng.integers(0, 5, rows).astype(float)
    kids[rng.random(rows) < 0.1] = np.nan
    color = rng.choice(["red", "green", "blue"], rows).astype(object)
    color[rng.random(rows) < 0.2] = None
    return pd.DataFrame(
        {
            "record-id": [f"r-{i}" for i in range(rows)],
            "ts": pd.date_range("2024-03-01", periods=rows, freq="h", tz="UTC"),
            "amount": rng.lognormal(3, 1, rows).round(2),
            "hours-per-week": rng.integers(1, 99, rows),
            "kids": kids,
            "flag": rng.random(rows) < 0.3,
            "is_x": rng.integers(0, 2, rows),
            "color": color,
            "answer": rng.choice(["yes", "no", "on", "off"], rows),
            "country": country,
            "notes": [f"free text number {i}" for i in range(rows)],
            "odd name: x": rng.normal(0, 1, rows),
            "yes": rng.normal(5, 1, rows),
            "123": rng.integers(-50, 50, rows),
            "income": rng.choice([">50K", "<=50K"], rows, p=[0.25, 0.75]),
        }
    )


EXPECTED = {
    "amount": ("numeric", False),
    "hours-per-week": ("integer", False),
    "kids": ("integer", True),
    "flag": ("boolean", False),
    "is_x": ("boolean", False),
    "color": ("categorical", True),
    "answer": ("categorical", False),
    "country": ("categorical", False),
    "odd name: x": ("numeric", False),
    "yes": ("numeric", False),
    "123": ("integer", False),
}


def write_data(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.fixture(params=["parquet", "csv"])
def data_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return write_data(mixed_frame(), tmp_path / f"My Data_2024.{request.param}")


def draft(path: Path, **kw: object) -> object:
    options = {"id_column": "record-id", "time_column": "ts", "today": date(2026, 3, 1)}
    return draft_contract(path, "income", **(options | kw))  # type: ignore[arg-type]


def test_draft_loads_and_matches_every_column(data_file: Path) -> None:
    # Given a Parquet or CSV file with every column type and nulls
    frame = mixed_frame()
    # When a contract is drafted from it
    contract = draft(data_file).contract  # type: ignore[attr-defined]
    # Then the text itself loads, and every feature has the type and nullability of its column
    assert parse_contract(yaml.safe_load(draft(data_file).text)) == contract  # type: ignore[attr-defined]
    got = {n: (f.type, f.nullable) for n, f in contract.features.items()}
    assert got == EXPECTED
    assert list(contract.features) == [c for c in frame.columns if c in EXPECTED]
    assert contract.other_columns == ["notes"]
    assert (contract.id, contract.time, contract.source) == ("record-id", "ts", "files")
    assert contract.name == "my-data-2024"
    # And the categories are the values seen, most frequent first, under their null rate
    color = contract.features["color"]
    counts = frame["color"].value_counts()
    assert color.values == list(counts.index)
    assert color.null_rate == pytest.approx(frame["color"].isna().mean(), abs=0.006)
    assert contract.features["kids"].null_rate == pytest.approx(0.1, abs=0.03)
    assert sorted(contract.features["answer"].values or []) == ["no", "off", "on", "yes"]


def test_drafted_contract_accepts_its_own_data(data_file: Path) -> None:
    # Given a draft from a file
    contract = draft(data_file).contract  # type: ignore[attr-defined]
    frame = mixed_frame()
    # Then the file's rows encode, lie inside every drafted range, and pass the drafted bounds
    matrix = contract.to_matrix(frame)
    assert matrix.shape == (len(frame), len(contract.features))
    for name, feature in contract.features.items():
        if feature.min is not None:
            values = frame[name].dropna()
            assert feature.min <= values.min()
            assert values.max() <= feature.max
    assert contract.rows.min <= len(frame) <= contract.rows.max
    rate = contract.labels(frame).mean()
    assert contract.label_rate.min < rate < contract.label_rate.max
    assert contract.label.positive == ">50K"  # the minority
    times = frame["ts"]
    assert contract.time_range.min < f"{times.min():%Y-%m-%d}"
    assert f"{times.max():%Y-%m-%d}" < contract.time_range.max
    # And the country column's rare values make unseen ones map to `other`
    assert contract.features["country"].unseen == "other"
    assert contract.features["color"].unseen == "reject"
    assert contract.slices == ["color", "answer"]
    assert 0 < contract.metric.floors["pr_auc"] < 1
    assert contract.metric.primary == "pr_auc"


def test_yaml_words_stay_strings_and_odd_names_round_trip(tmp_path: Path) -> None:
    # Given categories and column names that YAML would read as booleans, null or numbers
    frame = mixed_frame()
    frame["answer"] = np.random.default_rng(1).choice(["yes", "no", "on", "null", "true"], 600)
    path = write_data(frame, tmp_path / "d.parquet")
    # When drafted
    result = draft(path)
    contract = result.contract  # type: ignore[attr-defined]
    # Then every value and name comes back as the same string
    assert sorted(contract.features["answer"].values or []) == ["no", "null", "on", "true", "yes"]
    for name in ODD_NAMES:
        assert name in contract.features
    assert '"odd name: x":' in result.text  # type: ignore[attr-defined]
    assert contract.to_matrix(frame).shape[1] == len(EXPECTED)


def test_draft_is_commented_for_review(data_file: Path) -> None:
    # When drafted / Then the text says it is a draft, from where, and shows the profile
    text = draft(data_file).text  # type: ignore[attr-defined]
    assert text.startswith("# DRAFT data contract")
    assert str(data_file) in text.splitlines()[0]
    assert "600 rows" in text
    assert "2026-03-01" in text
    assert text.count("# FORK:") >= 10
    assert "# integer (float64); nulls 10" in text or "# integer (float64); nulls 9" in text
    assert "likely an identifier or free text" in text
    assert "observed" in text
    assert "widened" in text


def test_label_defaults_and_positive_option(tmp_path: Path) -> None:
    # Given 0/1, true/false and text labels
    frame = mixed_frame()
    rng = np.random.default_rng(2)
    frame["y01"] = (rng.random(600) < 0.7).astype(np.int64)  # 1 is the majority here
    frame["ybool"] = rng.random(600) < 0.2
    path = write_data(frame, tmp_path / "d.parquet")
    # Then 1 and true are positive by default, text labels take the minority, --positive chooses
    as01 = draft_contract(path, "y01").contract.label
    assert (as01.positive, as01.negative) == (1, 0)
    asbool = draft_contract(path, "ybool").contract.label
    assert (asbool.positive, asbool.negative) == (True, False)
    chosen = draft_contract(path, "income", positive="<=50K").contract.label
    assert (chosen.positive, chosen.negative) == ("<=50K", ">50K")
    assert draft_contract(path, "y01", positive="0").contract.label.positive == 0
    # And the label and the other candidate labels are not features
    assert "y01" not in draft_contract(path, "y01").contract.other_columns


def test_large_parquet_reads_a_sample_and_the_footer(tmp_path: Path) -> None:
    # Given a Parquet file of many row groups
    frame = mixed_frame(rows=5000)
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=500)
    # When drafted from a sample of a few row groups
    result = draft(path, sample_rows=1000)
    # Then the row count and the numeric ranges are the whole file's (from the footer)
    profile = result.profile  # type: ignore[attr-defined]
    assert profile.rows == 5000
    assert profile.sampled_rows == 1000
    assert profile.columns["amount"].maximum == frame["amount"].max()
    assert profile.columns["kids"].nulls == frame["kids"].isna().sum()
    assert "5,000 rows; categories from 1,000 sampled rows" in result.text  # type: ignore[attr-defined]
    assert result.contract.rows.min == 500  # type: ignore[attr-defined]


def test_draft_from_census_synthetic_data_matches_the_census_contract(tmp_path: Path) -> None:
    # Given synthetic data from the census fixture contract
    census = load_contract(REPO / "tests/fixtures/contracts/census.yaml")
    path = tmp_path / "census.parquet"
    synthesize(census, 3000, seed=4).to_parquet(path, index=False)
    # When drafted with the same roles
    drafted = draft_contract(path, "income", id_column="record-id").contract
    # Then each feature has the census contract's type, nullability and categories
    for name, feature in census.features.items():
        got = drafted.features[name]
        assert (got.type, got.nullable) == (feature.type, feature.nullable), name
        if feature.values:
            assert set(got.values or []) == set(feature.values), name
    assert drafted.label.positive == ">50K"
    assert drafted.time is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"label": "incme"}, "no column 'incme'; did you mean 'income'?"),
        ({"id_column": "record_id"}, "no column 'record_id'; did you mean 'record-id'?"),
        ({"time_column": "zzz"}, "no column 'zzz'; the columns are 'record-id', 'ts'"),
        ({"id_column": "answer"}, "id column 'answer' is not unique"),
        ({"label": "answer"}, 'must have exactly two values, it has 4: "'),
        ({"positive": "maybe"}, "--positive 'maybe' is not a value of label column 'income'"),
        ({"time_column": "amount"}, "time column 'amount' is float64, not date-times"),
        ({"time_column": "color"}, "time column 'color' holds values that are not dates"),
        ({"name": "Bad_Name"}, "--name 'Bad_Name': use lowercase"),
        ({"id_column": "income"}, "--id and --label name the same column 'income'"),
    ],
)
def test_bad_arguments_fail_with_one_clear_line(
    tmp_path: Path, change: dict[str, str], fragment: str
) -> None:
    # Given a good file and one bad argument
    path = write_data(mixed_frame(), tmp_path / "d.parquet")
    options = {"label": "income", "id_column": "record-id", "time_column": "ts"} | change
    label = options.pop("label")
    # When drafted / Then the error names the problem on one line
    with pytest.raises(InitError) as caught:
        draft_contract(path, label, **options)  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_files_fail_clearly(tmp_path: Path) -> None:
    # Given a missing file, another format and a corrupt Parquet file
    (tmp_path / "d.json").write_text("{}")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    cases = {
        tmp_path / "missing.parquet": "missing.parquet: no such file",
        tmp_path / "d.json": "not a Parquet or CSV file",
        tmp_path / "bad.parquet": "not a readable Parquet file",
    }
    for path, fragment in cases.items():
        # Then each says what is wrong with which file
        with pytest.raises(InitError, match=fragment):
            draft_contract(path, "income")


def test_label_with_missing_values_is_refused(tmp_path: Path) -> None:
    frame = mixed_frame()
    frame.loc[3, "income"] = None
    path = write_data(frame, tmp_path / "d.parquet")
    with pytest.raises(InitError, match="label column 'income' has 1 missing values"):
        draft_contract(path, "income")


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    # Given an existing contract
    data = write_data(mixed_frame(), tmp_path / "d.parquet")
    out = tmp_path / "contract.yaml"
    out.write_text("keep me\n")
    # When init runs without --force / Then it refuses and leaves the file
    with pytest.raises(InitError, match="exists; pass --force"):
        init_contract(data, "income", out=out)
    assert out.read_text() == "keep me\n"
    # And with force it writes a contract that loads
    init_contract(data, "income", out=out, force=True, id_column="record-id")
    assert load_contract(out).id == "record-id"


def cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("init")(init_command)
    return app


def test_cli_writes_the_draft_and_errors_are_one_line(tmp_path: Path) -> None:
    # Given the command registered as the lead does
    runner = CliRunner()
    data = write_data(mixed_frame(), tmp_path / "d.csv")
    out = tmp_path / "c" / "contract.yaml"
    args = ["init", "--data", str(data), "--label", "income", "--id", "record-id"]
    # When run / Then it writes a loadable draft and says so
    result = runner.invoke(cli(), [*args, "--time", "ts", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    assert "11 features" in result.output
    assert load_contract(out).time == "ts"
    # And a second run refuses to overwrite, a bad column fails, each on one line, no traceback
    again = runner.invoke(cli(), [*args, "--out", str(out)])
    assert again.exit_code == 2
    assert "exists; pass --force" in again.output
    bad = runner.invoke(cli(), ["init", "--data", str(data), "--label", "incom", "--out", "x.yaml"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        f"error: {data}: no column 'incom'; did you mean 'income'?"
    ]
    forced = runner.invoke(cli(), [*args, "--out", str(out), "--force", "--name", "census-a"])
    assert forced.exit_code == 0, forced.output
    assert load_contract(out).name == "census-a"


def test_slug_makes_kubernetes_names() -> None:
    assert slug("My Data_2024") == "my-data-2024"
    assert slug("__") == "model"
    assert len(slug("x" * 80)) == 53
