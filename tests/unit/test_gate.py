"""The gate's decision table: better, equal, worse, NaN, no champion, slice regression, latency."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from argosy.config import GateParams
from argosy.data.contract import MetricContract
from argosy.evaluation.gate import commits_between, lineage, without_credentials
from argosy.evaluation.gate import decide as decide_with
from argosy.gatereport import GateReport
from argosy.gatereport import render_markdown as render_report

METRIC = MetricContract(primary="pr_auc", floors={"pr_auc": 0.3, "roc_auc": 0.85})
PARAMS = GateParams(
    max_regression=0.01,
    slice_max_regression=0.05,
    slice_min_positives=20,
    max_latency_us_per_row=50.0,
)


def render_markdown(doc: dict) -> str:
    """gate.md for a gate.json document, read the way every consumer reads it."""
    return render_report(GateReport.from_dict(doc, "test"))


def decide(challenger: dict, champion: dict | None, params: GateParams):
    return decide_with(challenger, champion, params, METRIC)


def metrics(pr_auc: float, roc_auc: float = 0.95, latency: float = 10.0, slices=None) -> dict:
    return {
        "pr_auc": pr_auc,
        "roc_auc": roc_auc,
        "latency_us_per_row": latency,
        "slices": slices or {"channel": {"pos": {"pr_auc": pr_auc, "positives": 50.0}}},
    }


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (0.80, 0.70, True),  # better
        (0.70, 0.70, True),  # equal
        (0.695, 0.70, True),  # worse, within the margin
        (0.60, 0.70, False),  # worse beyond the margin
        (math.nan, 0.70, False),  # NaN challenger fails closed
        (0.80, math.nan, False),  # NaN champion fails closed
    ],
)
def test_against_champion(challenger: float, champion: float, promote: bool) -> None:
    decision = decide(metrics(challenger), metrics(champion), PARAMS)
    assert decision.promote is promote


def test_no_champion_floors_decide() -> None:
    assert decide(metrics(0.5), None, PARAMS).promote
    rejected = decide(metrics(0.2), None, PARAMS)
    assert not rejected.promote
    assert any("pr_auc 0.2000 vs floor 0.3000" in c.detail for c in rejected.checks)
    assert any("no champion yet" in c.detail for c in rejected.checks)


def test_missing_metric_fails_closed() -> None:
    challenger = metrics(0.8)
    del challenger["roc_auc"]
    decision = decide(challenger, None, PARAMS)
    assert not decision.promote
    assert any("roc_auc is missing or NaN" in c.detail for c in decision.checks)


def test_slice_regression_rejects_despite_better_overall() -> None:
    # Given a challenger better overall but much worse on one well-populated slice
    slices_ours = {"channel": {"pos": {"pr_auc": 0.5, "positives": 40.0}}}
    slices_theirs = {"channel": {"pos": {"pr_auc": 0.7, "positives": 40.0}}}
    decision = decide(metrics(0.8, slices=slices_ours), metrics(0.7, slices=slices_theirs), PARAMS)
    # Then the slice check rejects it and names the slice
    assert not decision.promote
    assert [c.name for c in decision.checks if not c.passed] == ["slice:channel=pos"]


def test_small_slices_are_not_gated() -> None:
    slices_ours = {"channel": {"moto": {"pr_auc": 0.1, "positives": 5.0}}}
    slices_theirs = {"channel": {"moto": {"pr_auc": 0.9, "positives": 5.0}}}
    assert decide(
        metrics(0.8, slices=slices_ours), metrics(0.7, slices=slices_theirs), PARAMS
    ).promote


def test_latency_budget() -> None:
    decision = decide(metrics(0.9, latency=75.0), None, PARAMS)
    assert not decision.promote
    assert any(c.name == "latency" and not c.passed for c in decision.checks)


def test_markdown_is_a_pr_body() -> None:
    report = {
        "decision": "reject",
        "challenger": metrics(0.6),
        "champion": metrics(0.7),
        "champion_version": "3",
        "checks": [{"name": "non-regression:pr_auc", "passed": False, "detail": "worse"}],
        "floors": {"pr_auc": 0.3},
        "model": {
            "name": "example-model",
            "sha256": "a" * 64,
            "run_id": "r1",
            "uri": "models:/m-1",
        },
        "data_hash": "d1.dir",
        "git_commit": "c" * 40,
    }
    body = render_markdown(report)
    assert "❌ reject" in body
    assert "| pr_auc | ↑ higher | 0.7000 | 0.6000 | -0.1000 | 0.3000 |" in body
    assert "version 3" in body
    assert "❌ `non-regression:pr_auc`: worse" in body
    assert "1 of 1 checks failed" in body


def pr_report(**extra) -> dict:
    """A gate report with two slices (one gated, one small), lineage and a trigger."""
    slices = {
        "channel": {
            "web": {"pr_auc": 0.8, "positives": 60.0},
            "pos": {"pr_auc": 0.5, "positives": 4.0},
        }
    }
    return {
        "decision": "promote",
        "challenger": metrics(0.8, slices=slices) | {"brier": 0.01},
        "champion": metrics(0.78, slices=slices) | {"brier": 0.02},
        "champion_version": "3",
        "checks": [
            {"name": "floor:pr_auc", "passed": True, "detail": "pr_auc 0.8 vs floor 0.3"},
            {"name": "slice:channel=web", "passed": True, "detail": "pr_auc 0.8 vs 0.8"},
        ],
        "floors": {"pr_auc": 0.3},
        "primary_metric": "pr_auc",
        "slice_min_positives": 25,
        "model": {
            "name": "example-model",
            "sha256": "a" * 64,
            "run_id": "r2",
            "uri": "models:/m-2",
        },
        "data_hash": "new.dir",
        "git_commit": "b" * 40,
        "trigger": "drift monitor: drift held for 2 consecutive windows",
        "changes": {
            "challenger": {
                "run_id": "r2" * 8,
                "experiment_id": "1",
                "data_hash": "new.dir",
                "train_rows": 1200,
                "git_commit": "b" * 40,
            },
            "champion": {
                "run_id": "r1" * 8,
                "experiment_id": "1",
                "data_hash": "old.dir",
                "train_rows": 1000,
                "git_commit": "a" * 40,
                "params": {"max_depth": "6"},
            },
            "params_changed": {"max_depth": ["6", "8"]},
            "commits": ["bbbbbbb Retune depth", "ccccccc New batch"],
        },
        "tracking_uri": "https://mlflow.example.org",
        **extra,
    }


def test_pr_body_says_why_what_changed_direction_and_which_slices_gate() -> None:
    body = render_markdown(pr_report())
    # why, first
    assert body.index("**Why this ran:** drift monitor") < body.index("### Metrics")
    # what changed: data, rows, params, commits since the champion's training
    assert "| data (`data.dvc`) | old.dir | new.dir |" in body
    assert "| training rows | 1000 | 1200 |" in body
    assert "`max_depth` 6 → 8" in body
    assert "Commits since the champion's training: 2." in body
    assert "- `bbbbbbb` Retune depth" in body
    # direction: brier and latency are lower-is-better
    assert "| brier | ↓ lower | 0.0200 | 0.0100 | -0.0100 |" in body
    assert "| latency_us_per_row | ↓ lower |" in body
    assert "| roc_auc | ↑ higher |" in body
    # slices: the one with enough positives gated, the other marked too small
    assert "1 gated, 1 too small to gate" in body
    assert "| channel=web | 60 | 0.8000 | 0.8000 | gated |" in body
    assert "| channel=pos | 4 | 0.5000 | 0.5000 | too small (< 25 positives) |" in body
    # links to both runs in MLflow's UI
    assert "(https://mlflow.example.org/#/experiments/1/runs/" + "r2" * 8 + ")" in body


def test_pr_body_without_a_champion_or_lineage_says_so() -> None:
    report = pr_report(champion=None, champion_version=None, changes={}, trigger="")
    body = render_markdown(report)
    assert "a pipeline run by hand" in body
    assert "No champion in production yet" in body
    assert "no champion to compare" in body
    assert "MLflow, challenger: not recorded" in body


def test_commits_since_the_champion_come_from_git_and_unknown_ones_are_none(tmp_path) -> None:
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    heads = []
    for n in range(3):
        (tmp_path / "f").write_text(str(n))
        git("add", "f")
        git("commit", "-qm", f"change {n}")
        heads.append(git("rev-parse", "HEAD"))
    listed = commits_between(tmp_path, heads[0], heads[2])
    assert [c.split(" ", 1)[1] for c in listed] == ["change 2", "change 1"]
    assert commits_between(tmp_path, "f" * 40, heads[2]) is None
    assert commits_between(tmp_path, "", heads[2]) is None


def test_lineage_lists_changed_params_only_and_the_report_hides_credentials() -> None:
    changes = lineage(
        {"params": {"max_depth": "8", "seed": "42"}, "git_commit": ""},
        {"params": {"max_depth": "6", "seed": "42"}, "git_commit": ""},
        Path("."),
    )
    assert changes["params_changed"] == {"max_depth": ["6", "8"]}
    assert changes["commits"] is None
    assert without_credentials("https://bot:s3cret@mlflow.example.org/x") == (
        "https://mlflow.example.org/x"
    )
    assert without_credentials("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
