"""`argosy monitor` end to end on a written prediction log: outputs for Argo, retrain, cooldown."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from argosy.cli import app
from argosy.config import load_params
from argosy.data.contract import Contract
from argosy.examples.fraud.simulate import SimulationSpec, simulate
from argosy.monitoring.monitor import MonitorError, load_reference, run_monitor
from tests.monitoring.conftest import encoded, reference_frame, write_log
from tests.monitoring.second import second_contract, second_doc, second_rows

REPO = Path(__file__).resolve().parents[2]
DAY0 = datetime(2026, 5, 1, tzinfo=UTC)


def monitor_args(tmp_path: Path, *extra: str) -> list[str]:
    """`argosy monitor` on tmp_path's log, reference, state and reports, after DAY0's window."""
    return [
        "monitor",
        "--params",
        str(REPO / "params.yaml"),
        "--prediction-log",
        str(tmp_path / "log"),
        "--reference",
        str(tmp_path / "reference.parquet"),
        "--model-dir",
        str(tmp_path / "no-model"),
        "--state",
        str(tmp_path / "state.json"),
        "--reports",
        str(tmp_path / "reports"),
        "--as-of",
        "2026-05-02T00:10:00+00:00",
        *extra,
    ]


def write_contract(path: Path, doc: dict) -> Path:
    """Write a contract document as contract.yaml would hold it."""
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_two_drifted_windows_retrain_then_cooldown_holds(
    tmp_path: Path, reference: pd.DataFrame, contract: Contract
) -> None:
    # Given two daily windows of channel-shifted traffic logged by the server
    spec = SimulationSpec(30_000, 5, date(2026, 5, 1), 2, "channel_shift")
    write_log(tmp_path / "log", encoded(simulate(spec)), DAY0, timedelta(days=2))
    reference.to_parquet(tmp_path / "reference.parquet")
    params = load_params(REPO / "params.yaml").monitor
    monitoring = contract.monitoring.model_copy(update={"min_rows": 5000})
    contract = contract.model_copy(update={"monitoring": monitoring})
    # When the monitor runs after the second day, and again an hour later
    first = run_monitor(
        params,
        contract,
        DAY0 + timedelta(days=2, minutes=5),
        str(tmp_path / "log"),
        tmp_path / "reference.parquet",
        tmp_path / "state.json",
        tmp_path / "reports",
    )
    outputs = {p.name for p in (tmp_path / "reports").iterdir()}
    decision = json.loads((tmp_path / "reports" / "decision.json").read_text())
    second = run_monitor(
        params,
        contract,
        DAY0 + timedelta(days=2, hours=1),
        str(tmp_path / "log"),
        tmp_path / "reference.parquet",
        tmp_path / "state.json",
        tmp_path / "reports",
    )
    # Then the first retrains and writes every output the CronWorkflow reads;
    # the second re-uses the evaluated windows and is held back by the cooldown
    assert first.verdict.decision == "retrain"
    assert {"decision.json", "decision", "drift_share", "metrics.prom", "summary.md"} <= outputs
    assert "report.html" in outputs
    page = (tmp_path / "reports" / "report.html").read_text()
    assert decision["decision"] == "retrain"
    # and the drift report opens with that decision, and Evidently's own headline agrees with it
    # over the contract's features and params.yaml's drift share
    top = page.partition("<body>")[2].lstrip()[:2000]
    assert top.startswith('<div id="argosy-decision"')
    assert "Drift monitor: RETRAIN" in top
    assert (
        f"Dataset Drift is detected. Dataset drift detection threshold is {params.drift_share}"
        in page
    )
    assert f"out of {len(contract.feature_names)})" in page
    assert float((tmp_path / "reports" / "drift_share").read_text()) == pytest.approx(
        decision["drift_share"], rel=1e-5
    )
    assert decision["drift_share"] > params.drift_share
    assert "channel" in decision["drifted_columns"]
    assert second.verdict.decision == "cooldown"
    assert (tmp_path / "reports" / "decision").read_text() == "cooldown\n"


def test_a_quiet_window_is_insufficient_data(
    tmp_path: Path, reference: pd.DataFrame, contract: Contract
) -> None:
    # Given a log holding only 100 predictions on the window's day
    spec = SimulationSpec(100, 5, date(2026, 5, 1), 1)
    write_log(tmp_path / "log", encoded(simulate(spec)), DAY0, timedelta(hours=1))
    reference.to_parquet(tmp_path / "reference.parquet")
    # When the CLI runs the monitor
    result = CliRunner().invoke(app, monitor_args(tmp_path))
    # Then the decision is insufficient data, the reason names the contract key and both numbers,
    # and the drift share is not made up
    assert result.exit_code == 0, result.output
    assert "decision: insufficient_data" in result.output
    assert "100 logged rows" in result.output
    assert f"{contract.monitoring.min_rows} of contract.yaml monitoring.min_rows" in result.output
    assert (tmp_path / "reports" / "decision").read_text() == "insufficient_data\n"
    assert (tmp_path / "reports" / "drift_share").read_text() == "nan\n"


def test_missing_log_is_a_clear_error_with_exit_1(tmp_path: Path, reference: pd.DataFrame) -> None:
    # Given a reference but no prediction log at all
    reference.to_parquet(tmp_path / "reference.parquet")
    # When the CLI runs the monitor
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "--params",
            str(REPO / "params.yaml"),
            "--contract",
            str(REPO / "contract.yaml"),
            "--prediction-log",
            str(tmp_path / "absent"),
            "--reference",
            str(tmp_path / "reference.parquet"),
            "--state",
            str(tmp_path / "state.json"),
            "--reports",
            str(tmp_path / "reports"),
        ],
    )
    # Then it exits 1 naming the path, and writes no decision
    assert result.exit_code == 1
    assert "absent: no prediction log here" in result.output
    assert not (tmp_path / "reports" / "decision").exists()


def test_another_contract_replayed_like_its_reference_is_no_drift_with_labels(
    tmp_path: Path,
) -> None:
    # Given the second contract (id `row-key`, labels "yes"/"no", nullable categorical), its
    # reference, a day of logged rows drawn like it, and those rows' late labels
    contract_path = write_contract(tmp_path / "contract.yaml", second_doc())
    contract = second_contract()
    reference_frame(second_rows(30_000, seed=1), contract, 20_000, 7).to_parquet(
        tmp_path / "reference.parquet"
    )
    raw = second_rows(5_000, seed=2, first_id=100_000)
    write_log(
        tmp_path / "log", encoded(raw, contract, raw["score"]), DAY0, timedelta(hours=20), contract
    )
    raw.drop(columns="score").to_parquet(tmp_path / "labels.parquet")
    # When the CLI runs the monitor with that contract and the labels
    result = CliRunner().invoke(
        app,
        monitor_args(
            tmp_path, "--contract", str(contract_path), "--labels", str(tmp_path / "labels.parquet")
        ),
    )
    # Then nothing drifts, and every logged row is joined to its label by `row-key`
    assert result.exit_code == 0, result.output
    assert "decision: no_drift" in result.output
    decision = json.loads((tmp_path / "reports" / "decision.json").read_text())
    assert decision["drift_share"] == 0.0
    feedback = decision["feedback"]
    assert feedback["labelled"] == 5_000
    assert feedback["positives"] == int((raw["churned"] == "yes").sum())
    assert feedback["status"] == "ok", feedback


def test_labels_without_a_contract_id_fail_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    # Given a contract that declares no `id`, and a labels file
    contract_path = write_contract(tmp_path / "contract.yaml", second_doc(id_column=None))
    second_rows(10, seed=1).to_parquet(tmp_path / "labels.parquet")
    # When the monitor is asked to join labels
    result = CliRunner().invoke(
        app,
        monitor_args(
            tmp_path, "--contract", str(contract_path), "--labels", str(tmp_path / "labels.parquet")
        ),
    )
    # Then it exits non-zero before any work, saying the contract declares no id
    assert result.exit_code == 2, result.output
    assert "declares no `id`" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "reports").exists()


def test_per_column_method_naming_no_feature_is_a_clear_error(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    # Given params whose monitor.per_column_method names a column the contract does not have
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    doc["monitor"]["per_column_method"] = {"no-such-column": "wasserstein"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    reference.to_parquet(tmp_path / "reference.parquet")
    args = monitor_args(tmp_path)
    args[args.index("--params") + 1] = str(tmp_path / "params.yaml")
    # When the monitor runs
    result = CliRunner().invoke(app, args)
    # Then it exits 2 naming the key and the column
    assert result.exit_code == 2, result.output
    assert "monitor.per_column_method" in result.output
    assert "no-such-column" in result.output


def test_retrain_refuses_a_file_without_the_contract_columns(tmp_path: Path) -> None:
    # Given the second contract and a labelled file that lacks its id column
    contract_path = write_contract(tmp_path / "contract.yaml", second_doc())
    second_rows(10, seed=1).drop(columns="row-key").to_parquet(tmp_path / "period.parquet")
    # When the local retraining trigger is given that file
    result = CliRunner().invoke(
        app,
        ["retrain", str(tmp_path / "period.parquet"), "--no-run", "--contract", str(contract_path)],
    )
    # Then it exits 1 naming the missing column and where the contract declares it
    assert result.exit_code == 1, result.output
    assert "lacks ['row-key']" in result.output
    assert "contract.yaml id" in result.output


def test_a_model_trained_on_other_features_is_refused(tmp_path: Path) -> None:
    # Given the second contract's reference and a model directory whose metadata lists other
    # features
    contract = second_contract()
    reference_frame(second_rows(100, seed=1), contract, 100, 7).to_parquet(tmp_path / "ref.parquet")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"not read")
    meta = {"name": "m", "features": ["a", "b"], "threshold": 0.5, "sha256": "0" * 64}
    (model / "metadata.json").write_text(json.dumps(meta))
    # When the reference is loaded to be scored by that model
    # Then the error says the model was trained on another contract's features
    with pytest.raises(MonitorError, match=r"not the data contract's \(contract.yaml features"):
        load_reference(tmp_path / "ref.parquet", contract, model)
    # And without a model, the reference is the contract's features and the 0/1 label
    loaded = load_reference(tmp_path / "ref.parquet", contract, tmp_path / "absent")
    assert list(loaded.columns) == [*contract.feature_names, "churned"]
    assert set(loaded["churned"]) <= {0, 1}
