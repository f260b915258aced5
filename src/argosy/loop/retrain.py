"""The local retraining trigger: add a newly labelled period to ``data/``, re-pin, run the pipeline.

In the cluster the CronWorkflow submits the ``argosy-training`` WorkflowTemplate instead; here the
same stages run under ``dvc repro``. The pipeline's own gate still decides whether the retrained
model may replace the champion, so a trigger never deploys anything by itself.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from argosy.data.contract import Contract


class TriggerError(RuntimeError):
    """The labelled period cannot be added or the pipeline failed."""


@dataclass(frozen=True)
class TriggerResult:
    """What the trigger did."""

    added: Path
    rows: int
    pipeline_ran: bool


def _run(root: Path, *command: str) -> None:
    exe = shutil.which(command[0]) or command[0]
    done = subprocess.run([exe, *command[1:]], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise TriggerError(f"`{' '.join(command)}` failed:\n" + "\n".join(tail))


def add_labelled_period(labelled: Path, data_dir: Path, contract: Contract) -> tuple[Path, int]:
    """Copy one labelled Parquet file into ``data_dir`` after checking it is raw data.

    Raw data has every column the contract names (``contract.raw_columns``: id, time,
    ``other_columns``, ``features`` and ``label.column``).

    Raises:
        TriggerError: Not a Parquet file, missing raw columns, or a file of that name exists.
    """
    try:
        table_schema = pq.read_schema(labelled)
        rows = pq.read_metadata(labelled).num_rows
    except (OSError, ValueError) as exc:
        raise TriggerError(f"{labelled}: not a readable Parquet file ({exc})") from None
    missing = [c for c in contract.raw_columns if c not in table_schema.names]
    if missing:
        raise TriggerError(
            f"{labelled}: not raw data of this contract, lacks {missing[:6]}"
            f"{'...' if len(missing) > 6 else ''} (contract.yaml id, time, other_columns, "
            "features and label.column)"
        )
    target = data_dir / labelled.name
    if target.exists():
        raise TriggerError(f"{target} exists: this period is already in the training data")
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(labelled, target)
    return target, rows


def retrain(
    root: Path, labelled: Path, contract: Contract, run_pipeline: bool = True
) -> TriggerResult:
    """Append ``labelled`` to ``root/data``, ``dvc add data`` and (by default) ``dvc repro``.

    Raises:
        TriggerError: Bad input file, or DVC failed (the message carries DVC's last lines).
    """
    target, rows = add_labelled_period(labelled, root / "data", contract)
    try:
        _run(root, "dvc", "add", "data")
    except TriggerError:
        target.unlink()
        raise
    if run_pipeline:
        _run(root, "dvc", "repro")
    return TriggerResult(target, rows, run_pipeline)
