"""The demo's summary, environment and data helpers, without running the loop."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml

from argosy.data.contract import load_contract, parse_contract
from argosy.data.synthetic import DEFAULT_START, synthesize
from argosy.gatereport import GateReport, ModelRef
from argosy.loop.demo import (
    DemoError,
    DemoResult,
    demo_env,
    monitor_contract,
    render_summary,
    request_columns,
    use_own_files,
    window_start,
)
from argosy.modeldir import Metadata
from argosy.serving.model import LoadedModel
from argosy.serving.v2 import decode_infer_request

ROOT = Path(__file__).resolve().parents[2]
CENSUS = ROOT / "tests" / "fixtures" / "contracts" / "census.yaml"


def finished(tmp_path: Path) -> DemoResult:
    report = tmp_path / "reports" / "monitoring" / "report.html"
    return DemoResult(
        workdir=tmp_path,
        origin=tmp_path / "origin.git",
        clone=tmp_path / "repo",
        staging_commit="a" * 40,
        production_branch="promote/my-model-v1",
        served_rows=40_000,
        logged_rows=40_000,
        monitor={"decision": "retrain", "drift_share": 0.23, "drifted_columns": ["channel"]},
        retrained=True,
        champion_sha256="c" * 64,
        challenger_sha256="d" * 64,
        gate=GateReport(
            decision="reject",
            model=ModelRef("my-model", "d" * 64, "run2", "models:/m-2"),
            primary_metric="roc_auc",
            challenger={"pr_auc": 0.81, "roc_auc": 0.9, "recall_at_fpr": float("nan")},
            champion={"pr_auc": 0.85, "roc_auc": 0.95},
        ),
        reports={"drift report (Evidently)": report},
        elapsed_s=200.0,
    )


def test_summary_states_each_milestone_and_links_reports(tmp_path: Path) -> None:
    # Given a finished run whose gate rejected the challenger
    result = finished(tmp_path)
    # When the summary is rendered
    text = render_summary(result)
    # Then it names the staging commit, the merged branch, the monitor's finding and the gate
    assert "`aaaaaaaaaaaa` on origin/main" in text
    assert "`promote/my-model-v1` merged locally" in text
    assert "retrain, drift share 0.23; drifted: channel" in text
    assert "reject: challenger `dddddddddddd` vs champion `cccccccccccc`" in text
    # And the gate's primary metric comes first, then the others the gate reported
    rows = [line for line in text.splitlines() if line.startswith(("| roc_auc", "| pr_auc"))]
    assert rows == [
        "| roc_auc | 0.9000 (champion 0.9500) |",
        "| pr_auc | 0.8100 (champion 0.8500) |",
    ]
    # And it links the report as a file URI, without a production promotion section
    assert (tmp_path / "reports/monitoring/report.html").as_uri() in text
    assert "argosy promote --env production" not in text


def test_demo_env_drops_github_tokens_and_points_mlflow_into_the_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a shell with a GitHub token
    monkeypatch.setenv("GITHUB_TOKEN", "secret")
    # When the demo builds its environment
    env = demo_env(tmp_path)
    # Then no token reaches its commands, and MLflow lives in the demo directory
    assert "GITHUB_TOKEN" not in env
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_the_clone_contract_switches_to_its_own_files_keeping_comments() -> None:
    # Given the repository's contract (the example's simulator as its source)
    text = (ROOT / "contract.yaml").read_text()
    # When the demo rewrites it for its clone
    rewritten = use_own_files(text)
    # Then only the source changes: the demo's data/ is that clone's own pinned files
    assert load_contract(ROOT / "contract.yaml").model_copy(update={"source": "files"}) == (
        parse_contract(yaml.safe_load(rewritten))
    )
    assert [line for line in rewritten.splitlines() if line.startswith("#")] == [
        line for line in text.splitlines() if line.startswith("#")
    ]
    assert use_own_files(rewritten) == rewritten


def test_a_contract_without_a_source_line_is_refused() -> None:
    # Given a text with no top-level source key
    # When the demo rewrites it / Then it says so
    with pytest.raises(DemoError, match="source"):
        use_own_files("name: x\n  source: nested\n")


def test_both_periods_fit_inside_the_time_range() -> None:
    # Given the repository's contract, and a copy whose time_range ends before the default start
    example = load_contract(ROOT / "contract.yaml")
    raw = yaml.safe_load((ROOT / "contract.yaml").read_text())
    raw["time_range"] = {"min": "2020-01-01", "max": "2021-01-01"}
    early = parse_contract(raw)
    # When no start is asked for, each takes the synthetic default if it fits, else the range's
    # first day
    assert window_start(example, None, 74) == DEFAULT_START
    assert window_start(early, None, 74) == date(2020, 1, 1)
    # And without an event time any start does
    assert window_start(load_contract(CENSUS), None, 74) == DEFAULT_START
    # And a start whose periods end after the range is refused
    with pytest.raises(DemoError, match="time_range"):
        window_start(early, date(2020, 12, 1), 74)


def test_the_monitor_contract_scales_window_sizes_to_the_replay() -> None:
    # Given the repository's contract as loaded from YAML
    raw = yaml.safe_load((ROOT / "contract.yaml").read_text())
    # When it is sized for an 8,000-row replay
    sized = monitor_contract(raw, logged_rows=8_000, labelled_rows=8_000)
    # Then the window floors fit the replay, the rest is unchanged, and the input is untouched
    assert sized["monitoring"]["min_rows"] == 4_000
    assert sized["monitoring"]["min_labelled_rows"] == 4_000
    assert sized["monitoring"]["min_positives"] == raw["monitoring"]["min_positives"]
    assert {k: v for k, v in sized.items() if k != "monitoring"} == {
        k: v for k, v in raw.items() if k != "monitoring"
    }
    assert raw["monitoring"]["min_rows"] == 20_000
    parse_contract(sized)


@pytest.mark.parametrize("path", [ROOT / "contract.yaml", CENSUS], ids=["example", "census"])
def test_requests_carry_raw_values_that_the_server_encodes_as_training_does(path: Path) -> None:
    # Given synthetic rows of a contract (missing and unseen values too) and its model
    contract = load_contract(path)
    frame = synthesize(
        contract, 300, seed=3, start=window_start(contract, None, 30), unseen_rate=0.05
    )
    model = LoadedModel(
        metadata=Metadata(
            name=contract.name,
            version=None,
            features=list(contract.feature_names),
            specs=list(contract.specs),
            input_name="features",
            threshold=0.5,
            sha256="0" * 64,
            id_column=contract.id,
        ),
        version="",
        sha256="",
        expected_sha256="",
        ready=False,
    )
    # When the demo builds the request's tensors
    columns = request_columns(frame, contract)
    body = {
        "inputs": [{"name": n, "datatype": d, "shape": [len(v)], "data": v} for n, d, v in columns]
    }
    # Then it sends one tensor per feature by name (raw strings, BOOL, FP32), then the id
    types = {f.type: d for (n, d, _), f in zip(columns, contract.features.values(), strict=False)}
    assert [n for n, _, _ in columns] == [
        *contract.feature_names,
        *([contract.id] if contract.id else []),
    ]
    assert types.get("categorical", "BYTES") == "BYTES"
    assert types.get("boolean", "BOOL") == "BOOL"
    assert types.get("numeric", "FP32") == "FP32"
    assert any(None in v for _, _, v in columns)
    # And the server decodes it to exactly the matrix training encodes, ids carried along
    decoded = decode_infer_request(json.dumps(body).encode(), model, max_batch=1_000)
    np.testing.assert_array_equal(decoded.x, contract.to_matrix(frame))
    model.validate(decoded.x)
    if contract.id:
        assert decoded.row_ids == frame[contract.id].astype(str).tolist()
