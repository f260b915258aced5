"""The demo's core on reduced sizes: every milestone of the loop, checked where it lands.

Real git (a bare origin), real DVC, MLflow on SQLite, the real model server over HTTP, Evidently
and the gate, on synthetic data drawn from the clone's contract.yaml; only the sizes are small
(20k baseline rows, 8k replayed, a smaller model).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from argosy.data.contract import Contract, load_contract
from argosy.loop.demo import STEPS, DemoConfig, DemoResult, run_demo

pytestmark = pytest.mark.slow

SMALL = {
    "train": {"n_estimators": 60, "early_stopping_rounds": 10},
    "evaluate": {"latency_rows": 200, "latency_repeats": 3},
    # Timing on a shared 2-core runner is noise; the latency check itself is tested elsewhere.
    "gate": {"max_latency_us_per_row": 10_000.0},
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, list[tuple[int, float]]]:
    """One reduced demo run, with the time each step started."""
    steps: list[tuple[int, float]] = []
    began = time.monotonic()
    config = DemoConfig(
        workdir=tmp_path_factory.mktemp("demo"),
        baseline_rows=20_000,
        baseline_days=30,
        drift_rows=8_000,
        drift_days=7,
        batch_rows=1_000,
        params_overrides=SMALL,
        timeout_s=300,
    )
    result = run_demo(config, lambda step, _msg: steps.append((step, time.monotonic() - began)))
    return result, steps


def contract_of(result: DemoResult) -> Contract:
    return load_contract(result.clone / "contract.yaml")


def test_demo_reports_every_step_in_order(demo) -> None:
    # Given a finished reduced run
    _, steps = demo
    # Then progress was reported once per step, in order (0: a long step still running)
    assert [s for s, _ in steps if s] == list(range(1, STEPS + 1))


def test_staging_pin_is_a_commit_on_origin_main(demo) -> None:
    # Given the run's bare origin
    result, _ = demo
    # When reading the staging overlay at the staging commit and at origin's main
    pinned = yaml.safe_load(
        git(result.origin, "show", "main:manifests/overlays/staging/model.yaml")
    )
    # Then the staging commit is on main and pins the first (champion) model by sha256
    git(result.origin, "merge-base", "--is-ancestor", result.staging_commit, "main")
    text = json.dumps(pinned)
    assert result.champion_sha256 in text


def test_the_clone_trains_on_its_own_files(demo) -> None:
    # Given the run's bare origin
    result, _ = demo
    # When reading the contract and data pin on its main
    pinned = yaml.safe_load(git(result.origin, "show", "main:contract.yaml"))
    data_dvc = yaml.safe_load(git(result.origin, "show", "main:data.dvc"))
    # Then the demo's setup commit made data/ the clone's own files, pinned by data.dvc
    assert pinned["source"] == "files"
    assert "Demo: synthetic data from contract.yaml (source: files)" in git(
        result.origin, "log", "--format=%s", "main"
    )
    assert data_dvc["outs"][0]["path"] == "data"


def test_production_pin_is_the_merged_promotion_branch(demo) -> None:
    # Given the run's bare origin
    result, _ = demo
    # Then the first model's promotion branch (named after the contract) was merged into main
    assert result.production_branch == f"promote/{contract_of(result).name}-v1"
    git(result.origin, "merge-base", "--is-ancestor", result.production_branch, "main")
    production = git(result.origin, "show", "main:manifests/overlays/production/model.yaml")
    assert result.champion_sha256 in production


def test_replayed_traffic_was_served_and_logged(demo) -> None:
    # Given the replay of the drifted period through the model server
    result, _ = demo
    # Then every row was answered (twice if the replay crossed a monitor window boundary)
    assert result.served_rows in {8_000, 16_000}
    # And the prediction log holds every answered row
    assert result.logged_rows == result.served_rows


def test_monitor_detected_drift_and_decided_to_retrain(demo) -> None:
    # Given the monitor's decision over the replayed window
    result, _ = demo
    contract = contract_of(result)
    categorical = {n for n, f in contract.features.items() if f.type == "categorical"}
    # Then drift was found in the contract's features, categorical ones among them
    assert result.monitor["decision"] == "retrain"
    assert result.monitor["drift_share"] >= 0.08
    drifted = set(result.monitor["drifted_columns"])
    assert drifted <= set(contract.feature_names)
    assert drifted & categorical
    # And the late labels were joined to the logged predictions on the contract's id
    assert result.monitor["feedback"]["labelled"] > 0
    # And the HTML report exists
    assert result.reports["drift report (Evidently)"].stat().st_size > 10_000


def test_retrain_added_the_labelled_period_and_trained_a_new_model(demo) -> None:
    # Given the clone after retraining
    result, _ = demo
    # Then data/ holds both periods, data.dvc changed on origin, and a different model exists
    files = sorted(p.name for p in (result.clone / "data").glob("*.parquet"))
    assert len(files) == 2
    assert any(name.startswith("baseline-") for name in files)
    assert any(name.startswith("shifted-") for name in files)
    assert result.retrained
    assert result.challenger_sha256 != result.champion_sha256
    assert "Demo: add the newly labelled period" in git(result.origin, "log", "--format=%s", "main")


def test_gate_compared_the_challenger_with_the_production_champion(demo) -> None:
    # Given the retrained model's gate report
    result, _ = demo
    gate_md = result.reports["production pull request body (gate)"]
    # Then it names the production champion and is rendered as the pull request body
    assert result.gate.champion is not None
    assert result.gate.decision in {"promote", "reject"}
    body = gate_md.read_text()
    assert "champion" in body
    assert "challenger" in body
    # And the body says why (the monitor's reasons) and what changed: new data since version 1
    assert "**Why this ran:** drift monitor: " in body
    assert "### What changed since the champion (version 1)" in body
    changes = result.gate.changes
    assert changes["champion"]["data_hash"] != changes["challenger"]["data_hash"]
    assert changes["challenger"]["train_rows"] > changes["champion"]["train_rows"]
    assert changes["commits"], "the retrain's commits since the champion's training"
    if result.gate.promoted:
        branch = f"promote/{contract_of(result).name}-v2"
        assert result.production_branch_v2 == branch
        assert result.production_body == body
        assert branch in git(result.origin, "branch", "--list")


def test_registry_aliases_follow_what_git_pins(demo) -> None:
    import mlflow

    # Given the finished run: v1 pinned in staging and (merged) production, v2 only proposed
    result, _ = demo
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{result.workdir / 'mlflow.db'}")
    name = contract_of(result).name
    # Then the registry's aliases name what git pins, not the newest version
    assert str(client.get_model_version_by_alias(name, "staging").version) == "1"
    assert str(client.get_model_version_by_alias(name, "production").version) == "1"


def test_summary_links_the_html_reports(demo) -> None:
    # Given the summary file
    result, _ = demo
    text = result.summary.read_text()
    # Then it links the drift report, the data docs and the gate body, each of which exists
    for name in ("drift report (Evidently)", "data validation (Data Docs)"):
        assert result.reports[name].suffix == ".html"
    for path in result.reports.values():
        assert path.exists(), path
        assert path.as_uri() in text
    assert "retrain" in text
