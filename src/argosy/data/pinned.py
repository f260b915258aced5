"""Recreate the pinned raw data on a fresh clone, and prove it is the data ``data.dvc`` pins.

A fresh clone has no DVC remote to pull from, but the simulator is deterministic: regenerating with
the seed in params.yaml must give exactly the bytes whose hash ``data.dvc`` records. If it does not
(the simulator or a dependency changed), the run stops rather than train on unpinned data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import yaml

from argosy.config import SimulateParams
from argosy.data.simulate import SimulationSpec, parse_start, simulate_to


class PinnedDataError(RuntimeError):
    """The data on disk is not the data that data.dvc pins."""


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("dvc") or "dvc", *args], cwd=root, capture_output=True, text=True
    )


def directory_md5(directory: Path) -> str:
    """DVC's hash of a directory: md5 of the sorted JSON list of each file's md5 and relpath."""
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        entries.append(
            {"md5": digest.hexdigest(), "relpath": path.relative_to(directory).as_posix()}
        )
    listing = json.dumps(entries, sort_keys=True).encode()
    return hashlib.md5(listing, usedforsecurity=False).hexdigest() + ".dir"


def pinned_md5(root: Path) -> str:
    """The hash ``data.dvc`` records for ``data/``."""
    outs = (yaml.safe_load((root / "data.dvc").read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", ""))


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
    actual, pinned = directory_md5(data_dir), pinned_md5(root)
    if actual != pinned:
        shutil.rmtree(data_dir)
        raise PinnedDataError(
            f"regenerated data hashes to {actual} but data.dvc pins {pinned}: the simulator, its "
            "params or a locked dependency changed. Review the change, then run `make data-pin`."
        )
    commit = _dvc(root, "commit", "--force", "data.dvc")
    if commit.returncode != 0:
        raise PinnedDataError(f"dvc commit failed: {commit.stderr.strip()}")
    return f"{data_dir}: regenerated {spec.rows} rows from seed {spec.seed}; matches data.dvc"
