"""Recreate the pinned raw data on a fresh clone, and prove it is the data ``data.dvc`` pins.

A fresh clone has no DVC remote to pull from, but the simulator is deterministic: regenerating with
the seed in params.yaml must give exactly the bytes whose hash ``data.dvc`` records. If it does not
(the simulator or a dependency changed), the run stops rather than train on unpinned data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from argosy.config import SimulateParams
from argosy.data.simulate import SimulationSpec, parse_start, simulate_to


class PinnedDataError(RuntimeError):
    """The data on disk is not the data that data.dvc pins."""


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("dvc") or "dvc", *args], cwd=root, capture_output=True, text=True
    )


def data_matches_pin(root: Path) -> tuple[bool, str]:
    """Whether ``data/`` matches ``data.dvc`` (per ``dvc status``), with DVC's report."""
    status = _dvc(root, "status", "--json", "data.dvc")
    if status.returncode != 0:
        raise PinnedDataError(f"dvc status failed: {status.stderr.strip() or status.stdout}")
    report = json.loads(status.stdout or "{}")
    return not report, json.dumps(report)


def ensure_pinned_data(root: Path, params: SimulateParams) -> str:
    """Make sure ``data/`` holds the pinned data set, regenerating it when absent.

    Returns:
        What was done, for the user.

    Raises:
        PinnedDataError: The regenerated data differs from the pin; the new files are removed.
    """
    data_dir = root / "data"
    if not (root / "data.dvc").exists():
        raise PinnedDataError(f"{root / 'data.dvc'}: missing; run `make data-pin` to create it")
    if data_dir.is_dir() and any(data_dir.glob("*.parquet")):
        return f"{data_dir}: present (dvc repro checks it against data.dvc)"
    spec = SimulationSpec(
        rows=params.rows,
        seed=params.seed,
        start=parse_start(params.start),
        days=params.days,
        scenario=params.scenario,
    )
    simulate_to(spec, data_dir)
    matches, report = data_matches_pin(root)
    if not matches:
        shutil.rmtree(data_dir)
        raise PinnedDataError(
            "regenerated data does not match the hash data.dvc pins "
            f"(dvc status: {report}); the simulator or a locked dependency changed. "
            "Review the change, then run `make data-pin` to pin the new data."
        )
    commit = _dvc(root, "commit", "--force", "data.dvc")
    if commit.returncode != 0:
        raise PinnedDataError(f"dvc commit failed: {commit.stderr.strip()}")
    return f"{data_dir}: regenerated {spec.rows} rows from seed {spec.seed}; matches data.dvc"
