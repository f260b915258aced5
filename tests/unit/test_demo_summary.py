"""The demo's summary rendering and its environment, without running the loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from argosy.demo import DemoResult, demo_env, render_summary


def finished(tmp_path: Path) -> DemoResult:
    report = tmp_path / "reports" / "monitoring" / "report.html"
    return DemoResult(
        workdir=tmp_path,
        origin=tmp_path / "origin.git",
        clone=tmp_path / "repo",
        staging_commit="a" * 40,
        production_branch="promote/fraud-detector-v1",
        served_rows=40_000,
        logged_rows=40_000,
        monitor={"decision": "retrain", "drift_share": 0.23, "drifted_columns": ["channel"]},
        retrained=True,
        champion_sha256="c" * 64,
        challenger_sha256="d" * 64,
        gate={
            "decision": "reject",
            "challenger": {"pr_auc": 0.81},
            "champion": {"pr_auc": 0.85},
        },
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
    assert "`promote/fraud-detector-v1` merged locally" in text
    assert "retrain, drift share 0.23; drifted: channel" in text
    assert "| pr_auc | 0.8100 (champion 0.8500) |" in text
    assert "reject: challenger `dddddddddddd` vs champion `cccccccccccc`" in text
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
