"""Benchmark: drift on 200k and 1M logged rows against a 200k reference, Evidently vs the floor.

Each measurement runs in its own process so peak RSS is its own. The floor is ``numpy_drift`` on
every row (the same per-column tests in plain numpy/scipy); the monitor is ``evidently_drift`` with
params.yaml's sampling (``monitor.max_rows``). The sampling error is the largest per-column
difference between the sampled and the full-data distances; a sweep over caps and sample seeds on
the 1M-row window (numpy only, one process) shows how that error and the drift decision depend on
the cap. Columns and their kinds come from contract.yaml (the shipped example). Usage:

    .venv/bin/python bench/monitoring/bench.py [--out bench/monitoring/results.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

SIZES = (200_000, 1_000_000)
CAPS = (20_000, 50_000, 100_000, 200_000)
SWEEP_SEEDS = (0, 1, 2, 3, 4)


def _make_data(work: Path) -> None:
    import pandas as pd

    from argosy.data.contract import load_contract
    from argosy.examples.fraud.simulate import SimulationSpec, simulate

    contract = load_contract()

    def encoded(rows: int, seed: int, scenario: str) -> pd.DataFrame:
        spec = SimulationSpec(rows, seed, date(2026, 4, 1), 30, scenario)
        matrix = contract.to_matrix(simulate(spec))
        return pd.DataFrame(matrix, columns=list(contract.feature_names))

    encoded(200_000, 1, "baseline").to_parquet(work / "reference.parquet")
    for rows in SIZES:
        encoded(rows, 2, "channel_shift").to_parquet(work / f"current-{rows}.parquet")


def _peak_rss_mib() -> int:
    """This process's own peak RSS (VmHWM).

    Not ``ru_maxrss``: Linux carries it over from the forking parent across exec, so every child
    reported the parent's peak (the data generation), whatever it did itself.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # not Linux


def _measure(work: Path, engine: str, rows: int) -> dict:
    import pandas as pd

    from argosy.config import load_params
    from argosy.data.contract import load_contract
    from argosy.monitoring.drift import evidently_drift, numpy_drift
    from argosy.monitoring.monitor import settings_from

    settings = settings_from(load_params().monitor, load_contract())
    if engine == "numpy-full":
        from dataclasses import replace

        settings = replace(settings, max_rows=10**9)
    reference = pd.read_parquet(work / "reference.parquet")
    current = pd.read_parquet(work / f"current-{rows}.parquet")
    if engine == "evidently":
        import evidently  # noqa: F401 - import time is not drift time

    start = time.perf_counter()
    run = evidently_drift if engine == "evidently" else numpy_drift
    result = run(reference, current, settings)
    wall = time.perf_counter() - start
    return {
        "engine": engine,
        "rows": rows,
        "compared_rows": result.compared_rows,
        "wall_s": round(wall, 2),
        "peak_rss_mib": _peak_rss_mib(),
        "distances": {c.column: c.distance for c in result.features},
        "drift_share": result.drift_share,
    }


def _sweep(work: Path) -> dict:
    """Sampling error and decision agreement of each cap vs every row, on the 1M-row window."""
    from dataclasses import replace

    import pandas as pd

    from argosy.config import load_params
    from argosy.data.contract import load_contract
    from argosy.monitoring.drift import numpy_drift
    from argosy.monitoring.monitor import settings_from

    settings = settings_from(load_params().monitor, load_contract())
    reference = pd.read_parquet(work / "reference.parquet")
    current = pd.read_parquet(work / f"current-{SIZES[-1]}.parquet")
    full = numpy_drift(reference, current, replace(settings, max_rows=10**9))
    exact = {c.column: c.distance for c in full.features}
    rows = []
    for cap in CAPS:
        errors, shares, same, worst = [], [], 0, {}
        for seed in SWEEP_SEEDS:
            got = numpy_drift(reference, current, replace(settings, max_rows=cap, seed=seed))
            gaps = {c.column: abs(c.distance - exact[c.column]) for c in got.features}
            errors.append(max(gaps.values()))
            worst_column = max(gaps, key=gaps.__getitem__)
            worst[worst_column] = worst.get(worst_column, 0) + 1
            shares.append(got.drift_share)
            same += got.drifted_columns == full.drifted_columns
        rows.append(
            {
                "cap": cap,
                "seeds": len(SWEEP_SEEDS),
                "max_abs_distance_error": round(max(errors), 5),
                "mean_max_abs_distance_error": round(sum(errors) / len(errors), 5),
                "drift_share_range": [min(shares), max(shares)],
                "same_drifted_columns": same,
                "worst_columns": worst,
            }
        )
    return {"full_drift_share": full.drift_share, "caps": rows}


def main() -> None:
    """Generate the data, run every measurement in a child process, print and save a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/monitoring/results.json"))
    parser.add_argument("--child", nargs=3, metavar=("WORK", "ENGINE", "ROWS"))
    args = parser.parse_args()
    if args.child:
        work, engine, rows = args.child
        if engine == "sweep":
            print(json.dumps(_sweep(Path(work))))
        else:
            print(json.dumps(_measure(Path(work), engine, int(rows))))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _make_data(work)
        for rows in SIZES:
            for engine in ("numpy-full", "evidently", "numpy-sampled"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(work), engine, str(rows)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = results[-1]
                print(
                    f"{rows:>9} {engine:<14} {r['wall_s']:>7.2f} s {r['peak_rss_mib']:>6} MiB",
                    flush=True,
                )
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(work), "sweep", "0"],
            check=True,
            capture_output=True,
            text=True,
        )
        sweep = json.loads(out.stdout.strip().splitlines()[-1])
    for rows in SIZES:
        full = next(r for r in results if r["rows"] == rows and r["engine"] == "numpy-full")
        for r in results:
            if r["rows"] == rows:
                r["vs_floor"] = round(r["wall_s"] / full["wall_s"], 2)
                r["max_abs_distance_error"] = max(
                    abs(r["distances"][c] - full["distances"][c]) for c in full["distances"]
                )
    for r in results:
        del r["distances"]
    document = {"measurements": results, "sampling_sweep_1m": sweep}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
