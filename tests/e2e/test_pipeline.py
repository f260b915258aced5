"""End to end: `dvc repro` of the whole pipeline on small data in a temporary copy of the repo.

Real DVC, real Great Expectations, real XGBoost/ONNX and MLflow on SQLite. Also checks that a second
run re-runs nothing, and that corrupt data or invalid params leave no half-written model and no
new MLflow run behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from argosy import gatereport
from argosy.data.contract import load_contract
from argosy.tracking import training_run

from ..conftest import REPO, venv_env

pytestmark = pytest.mark.slow


def sh(
    cwd: Path, *args: str, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, env=env or venv_env(), timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_count(uri: str) -> int:
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(load_contract(REPO / "contract.yaml").name)
    return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A git + DVC repo with the pipeline definition and 20k simulated rows, reproduced once."""
    root = tmp_path_factory.mktemp("pipeline")
    for name in ("dvc.yaml", "params.yaml", "contract.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "manifests/overlays/production").mkdir(parents=True)
    shutil.copy(
        REPO / "manifests/overlays/production/model.yaml",
        root / "manifests/overlays/production/model.yaml",
    )
    env = venv_env(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    sh(root, "git", "init", "-q", "-b", "main", env=env)
    sh(root, "dvc", "init", "-q", env=env)
    sh(root, "argosy", "simulate", "--rows", "20000", "--days", "30", env=env)
    sh(root, "dvc", "add", "-q", "data", env=env)
    sh(root, "git", "add", "-A", env=env)
    sh(
        root,
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "init",
        env=env,
    )
    first = sh(root, "dvc", "repro", env=env)
    return root, {"env": env, "first": first.stdout + first.stderr}


def test_repro_runs_every_stage_and_writes_the_gate(pipeline_repo: tuple[Path, dict]) -> None:
    root, ctx = pipeline_repo
    for stage in ("validate", "prepare", "train", "evaluate", "gate"):
        assert f"Running stage '{stage}'" in ctx["first"]
    # and the run is quiet: no library warning reaches the person watching it
    assert "WARNING mlflow" not in ctx["first"]
    assert "UserWarning" not in ctx["first"]
    gate = json.loads((root / "reports/gate.json").read_text())
    assert gate["decision"] in {"promote", "reject"}
    assert gate["champion"] is None
    assert gate["model"]["sha256"] == digest(root / "models/model.onnx")
    assert gate["model"]["uri"].startswith("models:/")
    assert (root / "reports/gate.md").read_text().startswith("## Model gate")
    assert json.loads((root / "reports/validation/result.json").read_text())["success"] is True
    metrics = json.loads((root / "reports/metrics.json").read_text())
    slices = json.loads((root / "reports/slices.json").read_text())
    # per-slice metrics in their own file, so `dvc metrics show` is one row of headline metrics
    assert set(slices) == {"channel", "merchant_category"}
    assert "slices" not in metrics
    shown = sh(root, "dvc", "metrics", "show", "--json", env=ctx["env"]).stdout
    assert "merchant_category" not in shown
    assert "pr_auc" in shown
    assert json.loads((root / "reports/plots/pr_curve.json").read_text())
    assert run_count(ctx["env"]["MLFLOW_TRACKING_URI"]) == 1


def test_run_records_provenance(pipeline_repo: tuple[Path, dict]) -> None:
    root, ctx = pipeline_repo
    meta = json.loads((root / "models/metadata.json").read_text())
    mlflow.set_tracking_uri(ctx["env"]["MLFLOW_TRACKING_URI"])
    # The model directory holds no run id (its bytes depend on data, params and code only): its
    # training run is found by the model's sha256, as the gate and the registry find it
    run_id = training_run(ctx["env"]["MLFLOW_TRACKING_URI"], meta["sha256"])
    assert run_id is not None
    assert gatereport.read(root / "reports/gate.json").model.run_id == run_id
    run = mlflow.get_run(run_id)
    pointer = yaml.safe_load((root / "data.dvc").read_text())
    assert run.data.tags["argosy.data_hash"] == pointer["outs"][0]["md5"]
    head = sh(root, "git", "rev-parse", "HEAD").stdout.strip()
    assert run.data.tags["argosy.git_commit"] == head
    assert run.data.tags["argosy.sha256"] == meta["sha256"]
    assert run.data.params["device"] == "cpu"
    assert "valid_pr_auc" in run.data.metrics
    # as MLflow's users expect: a model-training experiment, a run named after the commit,
    # the test split's metrics and the per-round curve on the run, the splits as inputs
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.run_name == f"{meta['name']}@{head[:10]}"
    test_metrics = json.loads((root / "reports/metrics.json").read_text())
    assert run.data.metrics["test_pr_auc"] == pytest.approx(test_metrics["pr_auc"])
    curve = mlflow.MlflowClient().get_metric_history(run.info.run_id, "valid_aucpr")
    assert len(curve) > meta["best_iteration"]
    assert [m.step for m in curve] == list(range(len(curve)))
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{meta['name']}-{s}" for s in ("train", "valid", "test")}
    assert inputs[f"{meta['name']}-train"].tags[0].value == "training"


def up_to_date_but_the_gate(status: str) -> bool:
    """``dvc status`` says nothing changed except the gate, which judges every run afresh."""
    return status.split() == ["gate:", "always", "changed"]


def test_second_repro_changes_nothing(pipeline_repo: tuple[Path, dict]) -> None:
    root, ctx = pipeline_repo
    lock = (root / "dvc.lock").read_text()
    # When the pipeline runs again with nothing changed
    again = sh(root, "dvc", "repro", env=ctx["env"])
    # Then only the gate runs (a verdict of the moment: run ids, latency, the trigger), no cached
    # stage reruns, and dvc.lock is as it was
    assert re.findall(r"Running stage '([^']+)'", again.stdout) == ["gate"]
    assert (root / "dvc.lock").read_text() == lock
    assert up_to_date_but_the_gate(sh(root, "dvc", "status", env=ctx["env"]).stdout)


def test_every_stage_rerun_from_scratch_leaves_dvc_lock_unchanged(
    pipeline_repo: tuple[Path, dict],
) -> None:
    """What a fresh clone's `make run` does: every stage runs again, dvc.lock must not change."""
    root, ctx = pipeline_repo
    lock = (root / "dvc.lock").read_text()
    first_run = gatereport.read(root / "reports/gate.json").model.run_id
    # When every stage is run again, cached or not (a new MLflow run, new timestamps, a new
    # latency measurement)
    again = sh(root, "dvc", "repro", "--force", env=ctx["env"])
    assert len(re.findall(r"Running stage '([^']+)'", again.stdout)) == 5
    # Then every hashed output has the same bytes: dvc.lock is unchanged
    assert (root / "dvc.lock").read_text() == lock
    # And the run's own facts moved on, outside the hashed outputs
    assert gatereport.read(root / "reports/gate.json").model.run_id != first_run


def test_bytecode_beside_the_sources_changes_nothing(pipeline_repo: tuple[Path, dict]) -> None:
    root, ctx = pipeline_repo
    # Given Python bytecode written beside a stage's code (any import without
    # PYTHONDONTWRITEBYTECODE does this)
    cache = root / "src/argosy/validation/__pycache__"
    cache.mkdir(exist_ok=True)
    stray = cache / "stray.cpython-311.pyc"
    stray.write_bytes(b"not source")
    try:
        # When DVC checks the pipeline / Then no stage's code dependency changed (.dvcignore)
        status = sh(root, "dvc", "status", env=ctx["env"])
        assert up_to_date_but_the_gate(status.stdout), status.stdout
    finally:
        stray.unlink()


def test_corrupt_data_stops_at_validate(pipeline_repo: tuple[Path, dict]) -> None:
    root, ctx = pipeline_repo
    model_before = digest(root / "models/model.onnx")
    lock_before = (root / "dvc.lock").read_text()
    runs_before = run_count(ctx["env"]["MLFLOW_TRACKING_URI"])
    # Given a truncated Parquet file landing in data/
    good = next((root / "data").glob("*.parquet")).read_bytes()
    bad = root / "data" / "transactions-late.parquet"
    bad.write_bytes(good[: len(good) // 2])
    try:
        # When the pipeline runs
        proc = sh(root, "dvc", "repro", check=False, env=ctx["env"])
        # Then validate fails naming the file, and train never runs
        assert proc.returncode != 0
        assert "transactions-late.parquet: not a readable Parquet file" in proc.stderr + proc.stdout
        assert "Running stage 'train'" not in proc.stdout
        assert digest(root / "models/model.onnx") == model_before
        assert (root / "dvc.lock").read_text() == lock_before
        assert run_count(ctx["env"]["MLFLOW_TRACKING_URI"]) == runs_before
    finally:
        # `dvc repro` re-pins data.dvc when data/ changed: restore the committed pin too
        bad.unlink()
        sh(root, "git", "checkout", "--", "data.dvc", env=ctx["env"])
        sh(root, "dvc", "checkout", "--force", env=ctx["env"])


def test_invalid_params_fail_before_work(pipeline_repo: tuple[Path, dict]) -> None:
    root, ctx = pipeline_repo
    params_text = (root / "params.yaml").read_text()
    runs_before = run_count(ctx["env"]["MLFLOW_TRACKING_URI"])
    gate_before = (root / "reports/gate.json").read_text()
    # Given a misspelled training key
    (root / "params.yaml").write_text(params_text.replace("max_depth:", "max_deph:"))
    try:
        # When the pipeline runs
        proc = sh(root, "dvc", "repro", check=False, env=ctx["env"])
        # Then train fails naming the key; no model is half-written, no run logged, no new gate
        assert proc.returncode != 0
        assert "train.max_deph: unknown key" in proc.stderr
        model_dir = root / "models"
        assert not model_dir.exists() or sorted(p.name for p in model_dir.iterdir()) == [
            "metadata.json",
            "model.onnx",
            "model.ubj",
        ]
        assert run_count(ctx["env"]["MLFLOW_TRACKING_URI"]) == runs_before
        assert (root / "reports/gate.json").read_text() == gate_before
        # And `argosy ensure-data` (the first step of `make run`) refuses before any stage runs
        first_step = sh(root, "argosy", "ensure-data", check=False, env=ctx["env"])
        assert first_step.returncode == 2
        assert "train.max_deph: unknown key" in first_step.stderr
    finally:
        (root / "params.yaml").write_text(params_text)
        sh(root, "dvc", "checkout", "--force", env=ctx["env"])


def test_the_dask_engine_retrains_in_the_same_pipeline(
    pipeline_repo: tuple[Path, dict], tmp_path: Path
) -> None:
    """`train.engine: dask` in params.yaml: `dvc repro` retrains on a two-worker LocalCluster.

    A copy of the reproduced repository, so the other tests keep their state; a fresh MLflow
    database, so its run is the only one.
    """
    root, ctx = pipeline_repo
    copy = tmp_path / "repo"
    shutil.copytree(root, copy, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", "mlruns"))
    env = dict(ctx["env"], MLFLOW_TRACKING_URI=f"sqlite:///{copy / 'mlflow.db'}")
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["train"]["engine"] = "dask"
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # When the pipeline is reproduced with only the engine changed
    out = sh(copy, "dvc", "repro", env=env)
    ran = set(re.findall(r"Running stage '(\w+)'", out.stdout + out.stderr))
    # Then the data stages are reused and train onward rerun, through the same export and gate
    assert ran == {"train", "evaluate", "gate"}, ran
    meta = json.loads((copy / "models/metadata.json").read_text())
    assert meta["engine"] == "dask"
    assert meta["best_iteration"] > 0
    gate = json.loads((copy / "reports/gate.json").read_text())
    assert gate["model"]["sha256"] == digest(copy / "models/model.onnx") == meta["sha256"]
    # And its model is about as good as the local engine's on the same test split
    local = json.loads((root / "reports/metrics.json").read_text())["pr_auc"]
    dask = json.loads((copy / "reports/metrics.json").read_text())["pr_auc"]
    assert abs(local - dask) < 0.05, (local, dask)
    assert training_run(env["MLFLOW_TRACKING_URI"], meta["sha256"]) is not None
