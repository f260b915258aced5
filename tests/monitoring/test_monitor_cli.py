"""`argosy monitor` end to end on a written prediction log: outputs for Argo, retrain, cooldown."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from argosy.cli import app
from argosy.config import load_params
from argosy.data.simulate import SimulationSpec, simulate
from argosy.monitoring.monitor import run_monitor
from tests.monitoring.conftest import encoded, write_log

REPO = Path(__file__).resolve().parents[2]
DAY0 = datetime(2026, 5, 1, tzinfo=UTC)


def test_two_drifted_windows_retrain_then_cooldown_holds(
    tmp_path: Path, reference: pd.DataFrame
) -> None:
    # Given two daily windows of channel-shifted traffic logged by the server
    spec = SimulationSpec(30_000, 5, date(2026, 5, 1), 2, "channel_shift")
    write_log(tmp_path / "log", encoded(simulate(spec)), DAY0, timedelta(days=2))
    reference.to_parquet(tmp_path / "reference.parquet")
    params = load_params(REPO / "params.yaml").monitor.model_copy(update={"min_rows": 5000})
    # When the monitor runs after the second day, and again an hour later
    first = run_monitor(
        params,
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
    assert decision["decision"] == "retrain"
    assert float((tmp_path / "reports" / "drift_share").read_text()) == pytest.approx(
        decision["drift_share"], rel=1e-5
    )
    assert decision["drift_share"] > params.drift_share
    assert "channel" in decision["drifted_columns"]
    assert second.verdict.decision == "cooldown"
    assert (tmp_path / "reports" / "decision").read_text() == "cooldown\n"


def test_a_quiet_window_is_insufficient_data(tmp_path: Path, reference: pd.DataFrame) -> None:
    # Given a log holding only 100 predictions on the window's day
    spec = SimulationSpec(100, 5, date(2026, 5, 1), 1)
    write_log(tmp_path / "log", encoded(simulate(spec)), DAY0, timedelta(hours=1))
    reference.to_parquet(tmp_path / "reference.parquet")
    # When the CLI runs the monitor
    result = CliRunner().invoke(
        app,
        [
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
        ],
    )
    # Then the decision is insufficient data, and the drift share is not made up
    assert result.exit_code == 0, result.output
    assert "decision: insufficient_data" in result.output
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
