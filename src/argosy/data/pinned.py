"""Put the data ``data.dvc`` pins into ``data/`` on a fresh clone, from the contract's source.

``source: files`` (a fork's own data): ``data/`` is the user's files; when it is absent,
``dvc pull`` fetches the pinned version from the DVC remote, and with neither files nor a reachable
remote the run stops saying what to do. ``source: simulate`` (the shipped example): a fresh clone
has no DVC remote to pull from, but the example's simulator is deterministic, so regenerating with
the seed in params.yaml must give exactly the bytes whose hash ``data.dvc`` records. If it does not
(the simulator or a dependency changed), the run stops rather than train on unpinned data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from argosy import proc, tracking
from argosy.config import SimulateParams


class PinnedDataError(RuntimeError):
    """The data on disk is not the data that data.dvc pins."""


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return proc.run_bytes([shutil.which("dvc") or "dvc", *args], root, check=False)


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


def ensure_pinned_data(root: Path, source: str, params: SimulateParams | None) -> str:
    """Make sure ``data/`` holds the pinned data set, fetching or regenerating it when absent.

    Args:
        root: The repository checkout.
        source: The contract's ``source``: ``files`` or ``simulate``.
        params: params.yaml ``simulate:`` (used with ``source: simulate`` only).

    Returns:
        What was done, for the user.

    Raises:
        PinnedDataError: No pin, nothing to pull, or regenerated data that differs from the pin
            (the new files are removed).
    """
    data_dir = root / "data"
    present = data_dir.is_dir() and any(data_dir.glob("*.parquet"))
    if not (root / "data.dvc").exists():
        hint = (
            "run `dvc add data` to pin it"
            if present
            else "put your Parquet files under data/ and run `dvc add data`"
        )
        if source == "simulate":
            hint = "run `make data-pin` to create it"
        raise PinnedDataError(f"{root / 'data.dvc'}: missing; {hint}")
    if present:
        return f"{data_dir}: present (dvc repro checks it against data.dvc)"
    if source == "files":
        return _pull(root)
    if params is None:
        raise PinnedDataError(
            "contract.yaml says `source: simulate` but params.yaml has no `simulate:` section; "
            "set `source: files` for your own data"
        )
    return _regenerate(root, params)


def _pull(root: Path) -> str:
    pulled = _dvc(root, "pull", "data.dvc")
    data_dir = root / "data"
    if pulled.returncode != 0 or not any(data_dir.glob("*.parquet")):
        reason = (pulled.stderr or pulled.stdout).decode(errors="replace").strip().splitlines()
        raise PinnedDataError(
            "data/ is missing and `dvc pull data.dvc` could not fetch it"
            + (f" ({reason[-1].removeprefix('ERROR: ')})" if reason else "")
            + ". Put your Parquet files under data/ and run `dvc add data`, or configure the DVC "
            "remote that holds them (`dvc remote add -d storage URL`), then run this again."
        )
    return f"{data_dir}: pulled the pinned version from the DVC remote"


def _regenerate(root: Path, params: SimulateParams) -> str:
    from argosy.examples import simulator

    sim = simulator()
    data_dir = root / "data"
    spec = sim.SimulationSpec(
        rows=params.rows,
        seed=params.seed,
        start=sim.parse_start(params.start),
        days=params.days,
        scenario=params.scenario,
    )
    sim.simulate_to(spec, data_dir)
    actual, pinned = directory_md5(data_dir), tracking.data_hash(root)
    if actual != pinned:
        shutil.rmtree(data_dir)
        raise PinnedDataError(
            f"regenerated data hashes to {actual} but data.dvc pins {pinned}: the simulator, its "
            "params or a locked dependency changed. Review the change, then run `make data-pin`."
        )
    commit = _dvc(root, "commit", "--force", "data.dvc")
    if commit.returncode != 0:
        raise PinnedDataError(
            f"dvc commit failed: {commit.stderr.decode(errors='replace').strip()}"
        )
    return f"{data_dir}: regenerated {spec.rows} rows from seed {spec.seed}; matches data.dvc"
