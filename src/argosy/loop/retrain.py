"""The local retraining trigger: add a newly labelled period to ``data/``, re-pin, run the pipeline.

In the cluster the CronWorkflow submits the ``argosy-training`` WorkflowTemplate instead; here the
same stages run under ``dvc repro``. The pipeline's own gate still decides whether the retrained
model may replace the champion, so a trigger never deploys anything by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from argosy import proc
from argosy.data.contract import Contract
from argosy.loop.ingest import IngestError, add_batch

RETRAIN_TIMEOUT_S = 6 * 3600.0
"""Longest a local ``dvc repro`` may run before the trigger gives up."""


class TriggerError(RuntimeError):
    """The labelled period cannot be added or the pipeline failed."""


@dataclass(frozen=True)
class TriggerResult:
    """What the trigger did."""

    added: Path
    rows: int
    pipeline_ran: bool


def check_labelled_period(labelled: Path, data_dir: Path, contract: Contract) -> tuple[Path, int]:
    """Where a labelled Parquet file goes in ``data_dir``, after checking it is raw data.

    Raw data has every column the contract names (``contract.raw_columns``: id, time,
    ``other_columns``, ``features`` and ``label.column``).

    Returns:
        The target path and the file's row count.

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
    return target, rows


def retrain(
    root: Path, labelled: Path, contract: Contract, run_pipeline: bool = True
) -> TriggerResult:
    """Add ``labelled`` to ``root/data`` under DVC (as ingestion does) and run ``dvc repro``.

    Raises:
        TriggerError: Bad input file, or DVC failed (the message carries DVC's last lines);
            ``data/`` and ``data.dvc`` are as they were then.
    """
    target, rows = check_labelled_period(labelled, root / "data", contract)
    try:
        add_batch(root, labelled, target)
        if run_pipeline:
            proc.run(["dvc", "repro"], root, timeout=RETRAIN_TIMEOUT_S)
    except (IngestError, proc.CommandError) as exc:
        raise TriggerError(str(exc)) from exc
    return TriggerResult(target, rows, run_pipeline)
