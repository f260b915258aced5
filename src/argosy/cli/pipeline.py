"""The pipeline's commands: the DVC stages, the example's data, ``summary`` and ``serve``.

One command per stage of dvc.yaml (validate, prepare, train, evaluate, gate).

Each command parses its options, loads and validates ``params.yaml`` and calls the stage's function;
the same command runs under ``dvc repro`` locally and in each Argo task in the cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from argosy.cli.common import (
    DEFAULT_CONTRACT,
    DEFAULT_PARAMS,
    ContractOption,
    ParamsOption,
    contract_or_exit,
    fail,
    params_or_exit,
)

DataDir = Annotated[Path, typer.Option(help="Directory of the raw data's Parquet files.")]
PreparedDir = Annotated[Path, typer.Option(help="Directory holding train/valid/test splits.")]
ModelDir = Annotated[Path, typer.Option(help="Model directory (model.onnx + metadata.json).")]
ReportsDir = Annotated[Path, typer.Option(help="Where reports are written.")]


def _scenarios() -> str:
    from argosy.examples import simulator

    return ", ".join(simulator().SCENARIOS)


def simulate(
    rows: Annotated[int | None, typer.Option(help="Rows to generate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same bytes).")] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (UTC).")] = None,
    days: Annotated[int | None, typer.Option(help="Length of the window in days.")] = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="Drift scenario of the example's simulator (default: params.yaml)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("data"),
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Generate the shipped example's synthetic data; unset options come from params `simulate:`."""
    from argosy.examples import simulator

    sim = simulator()
    defaults = params_or_exit(params).simulate
    if defaults is None:
        fail("params.yaml has no `simulate:` section (the example's simulator was removed)", 2)
    try:
        spec = sim.SimulationSpec(
            rows=defaults.rows if rows is None else rows,
            seed=defaults.seed if seed is None else seed,
            start=sim.parse_start(start or defaults.start),
            days=defaults.days if days is None else days,
            scenario=scenario or defaults.scenario,
        )
    except sim.SimulationError as exc:
        fail(f"{exc} (scenarios: {_scenarios()})", code=2)
    path = sim.simulate_to(spec, out)
    typer.echo(f"wrote {spec.rows} rows ({spec.scenario}) to {path}")


def ensure_data(
    params: ParamsOption = DEFAULT_PARAMS, contract: ContractOption = DEFAULT_CONTRACT
) -> None:
    """Make data/ hold what data.dvc pins: your files (dvc pull) or the example's simulator."""
    from argosy.data.pinned import PinnedDataError, ensure_pinned_data

    config = params_or_exit(params)
    source = contract_or_exit(contract).source
    try:
        typer.echo(ensure_pinned_data(Path.cwd(), source, config.simulate))
    except PinnedDataError as exc:
        fail(str(exc))


def validate(
    data: DataDir = Path("data"),
    reports: ReportsDir = Path("reports/validation"),
    contract: ContractOption = DEFAULT_CONTRACT,
) -> None:
    """Run the Great Expectations suite on the raw data; exit 1 naming each failed expectation."""
    from argosy.tracking import data_hash
    from argosy.validation.suite import DataValidationError, validate_dir

    declared = contract_or_exit(contract)
    try:
        outcome = validate_dir(data, declared, reports, data_hash())
    except DataValidationError as exc:
        fail(f"{exc}\nreport: {reports / 'result.json'}, Data Docs: {reports / 'data_docs'}")
    typer.echo(outcome.message())


def prepare(
    data: DataDir = Path("data"),
    out: PreparedDir = Path("artifacts/prepared"),
    params: ParamsOption = DEFAULT_PARAMS,
    contract: ContractOption = DEFAULT_CONTRACT,
) -> None:
    """Split the validated data into train/valid/test (by event time, else stratified)."""
    from argosy.data.encoding import EncodingError
    from argosy.data.prepare import prepare as run_prepare

    config, declared = params_or_exit(params), contract_or_exit(contract)
    try:
        sizes = run_prepare(data, out, config.prepare, declared)
    except (FileNotFoundError, ValueError, EncodingError) as exc:
        fail(str(exc))
    typer.echo(f"train {sizes.train}, valid {sizes.valid}, test {sizes.test} rows in {out}")


def train(
    prepared: PreparedDir = Path("artifacts/prepared"),
    model: ModelDir = Path("models"),
    params: ParamsOption = DEFAULT_PARAMS,
    contract: ContractOption = DEFAULT_CONTRACT,
) -> None:
    """Train XGBoost, export ONNX (parity-checked) and log the run to MLflow."""
    from argosy.training.train import TrainingError
    from argosy.training.train import train as run_train

    config, declared = params_or_exit(params), contract_or_exit(contract)
    try:
        result = run_train(prepared, model, config.train, declared)
    except TrainingError as exc:
        fail(str(exc))
    typer.echo(
        f"model {result.sha256[:12]} on {result.device}: best iteration {result.best_iteration}, "
        f"valid PR-AUC {result.valid_pr_auc:.4f}, ONNX max diff {result.onnx_max_abs_diff:.2g}, "
        f"MLflow run {result.run_id}"
    )


def evaluate(
    model: ModelDir = Path("models"),
    prepared: PreparedDir = Path("artifacts/prepared"),
    reports: ReportsDir = Path("reports"),
    params: ParamsOption = DEFAULT_PARAMS,
    contract: ContractOption = DEFAULT_CONTRACT,
) -> None:
    """Score the test split: PR-AUC, ROC-AUC, recall@FPR, precision@k, Brier and slices."""
    from argosy.data.encoding import EncodingError
    from argosy.evaluation.metrics import run_evaluate
    from argosy.modeldir import ModelDirError
    from argosy.tracking import TrackingServerError

    config, declared = params_or_exit(params), contract_or_exit(contract)
    try:
        metrics = run_evaluate(model, prepared, reports, config.evaluate, declared)
    except (ModelDirError, EncodingError, TrackingServerError) as exc:
        fail(str(exc))
    typer.echo(
        f"PR-AUC {metrics['pr_auc']:.4f}, ROC-AUC {metrics['roc_auc']:.4f}, "
        f"recall@FPR {metrics['recall_at_fpr']:.4f}, Brier {metrics['brier']:.4f}"
    )


def gate(
    model: ModelDir = Path("models"),
    prepared: PreparedDir = Path("artifacts/prepared"),
    metrics: Annotated[Path, typer.Option(help="Challenger metrics from evaluate.")] = Path(
        "reports/metrics.json"
    ),
    slices: Annotated[Path, typer.Option(help="Challenger per-slice metrics from evaluate.")] = (
        Path("reports/slices.json")
    ),
    production: Annotated[Path, typer.Option(help="The production overlay's model pin.")] = Path(
        "manifests/overlays/production/model.yaml"
    ),
    reports: ReportsDir = Path("reports"),
    params: ParamsOption = DEFAULT_PARAMS,
    contract: ContractOption = DEFAULT_CONTRACT,
) -> None:
    """Compare the challenger with the production champion; write gate.json and gate.md."""
    import mlflow

    from argosy.evaluation.gate import GateError, run_gate
    from argosy.modeldir import ModelDirError
    from argosy.pin import PinError
    from argosy.tracking import TrackingServerError, tracking_uri

    config, declared = params_or_exit(params), contract_or_exit(contract)
    mlflow.set_tracking_uri(tracking_uri())
    try:
        report = run_gate(
            model,
            prepared,
            (metrics, slices),
            production,
            reports,
            config.gate,
            config.evaluate,
            declared,
        )
    except (GateError, ModelDirError, PinError, TrackingServerError) as exc:
        fail(str(exc))
    typer.echo(f"gate decision: {report.decision} ({'; '.join(report.reasons)})")


def serve(ctx: typer.Context) -> None:
    """Serve model.onnx over the Open Inference Protocol (V2); `argosy serve --help` for options.

    The same server as `python -m argosy.serving` (what the KServe ServingRuntime runs): every
    option is passed through to it, e.g. `argosy serve --model-dir models --port 8080`.
    """
    from argosy.serving.__main__ import main as serve_main

    raise typer.Exit(serve_main(list(ctx.args)))


def summary(reports: ReportsDir = Path("reports")) -> None:
    """Print the gate decision, the metric table and where the reports are."""
    from argosy import gatereport

    path = reports / gatereport.GATE_JSON
    try:
        report = gatereport.read(path)
    except gatereport.GateReportError as exc:
        fail(str(exc))
    typer.echo(gatereport.render_headline(report).rstrip())
    typer.echo("")
    typer.echo("Reports:")
    for label, target in (
        ("gate (PR body)", reports / "gate.md"),
        ("gate (JSON)", path),
        ("metrics", reports / "metrics.json"),
        ("slice metrics", reports / "slices.json"),
        ("data validation", reports / "validation" / "data_docs" / "index.html"),
        ("PR curve / calibration", reports / "plots"),
    ):
        typer.echo(f"  {label:<24} {target}")
    typer.echo(f"\nDecision: {report.decision.upper()}")
