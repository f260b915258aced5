"""Benchmark the pipeline past one machine's comfort: 1M to 20M rows, `engine: local` and `dask`.

For each size, a git + DVC repository of the example's data (set up as bench/pipeline/bench.py
does: 1M-row simulated batch files) runs every stage alone with `train.engine: local`, each
stage's wall time and peak memory measured over its whole process tree (DVC, the stage, any Dask
workers). Then `train.engine: dask` (a LocalCluster of `train.dask.workers`, two by default)
trains and evaluates the same prepared data again, so the two engines' quality compares on equal
data. Results go to bench/scale/results.json, to the "Scale" section of docs/benchmarks.md (with
the command that produced them) and to docs/bench-scale.png (time and memory against rows).

Each size's result is written to the JSON file as soon as that size ends, so a run that stops
part way keeps what it measured; `--resume` keeps the sizes the file already holds and runs the
rest (the section records which sizes came from earlier runs).

Usage: python bench/scale/bench.py [--rows 1000000 5000000 10000000 20000000] [--resume]
    [--out bench/scale/results.json] [--doc docs/benchmarks.md] [--plot docs/bench-scale.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench" / "pipeline"))

from bench import STAGES, setup_repo, time_stages, write_section  # noqa: E402

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
DEFAULT_ROWS = (1_000_000, 5_000_000, 10_000_000, 20_000_000)
TARGET_TREE_MIB = 4096
TARGET_PIPELINE_S = 20 * 60
TARGET_VALIDATE_1M_S = 15.0
TARGET_PR_AUC_GAP = 0.005


def _pr_auc(root: Path) -> float:
    return float(json.loads((root / "reports" / "metrics.json").read_text())["pr_auc"])


def _engine(root: Path, engine: str) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["engine"] = engine
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def bench_size(rows: int, work: Path) -> dict:
    """Every stage with the local engine, then train and evaluate again on Dask."""
    root, env, simulate_s = setup_repo(rows, work)
    local = time_stages(rows, root, env, STAGES)
    local_pr_auc = _pr_auc(root)
    _engine(root, "dask")
    dask = time_stages(rows, root, env, ("train", "evaluate"))
    return {
        "rows": rows,
        "simulate_s": round(simulate_s, 2),
        "local": local,
        "dask": dask,
        "pr_auc": {"local": local_pr_auc, "dask": _pr_auc(root)},
        "load_1min": round(os.getloadavg()[0], 1),
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _cell(stage: dict) -> str:
    return f"{stage['seconds']:.1f} s / {stage['tree_rss_mib']:,} MiB"


def markdown(results: list[dict], command: str, resumed: bool = False) -> str:
    """The "Scale" section: per-stage table, engines side by side, targets checked."""
    again = " with `--resume` (sizes kept from earlier runs; each row says when)" if resumed else ""
    lines = [
        BEGIN,
        "## Scale: 1M to 20M rows, `engine: local` and `dask`",
        "",
        f"`{command}`{again} on {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}. Each cell: wall time / peak memory of the whole process "
        "tree (DVC, the stage, Dask workers). The dask rows train and evaluate the same prepared "
        "data on a LocalCluster. Each size was measured at the time in its row, with the 1-min "
        "load average after it (2 cores: above 2, other work shared the CPU). "
        "![time and memory against rows](bench-scale.png)",
        "",
        "| rows | "
        + " | ".join(STAGES)
        + " | train (dask) | evaluate (dask) | PR-AUC local / dask | measured (load) |",
        "|---:|" + "---|" * (len(STAGES) + 4),
    ]
    for r in results:
        cells = [_cell(r["local"][s]) for s in STAGES]
        cells += [_cell(r["dask"][s]) for s in ("train", "evaluate")]
        gap = r["pr_auc"]
        lines.append(
            f"| {r['rows']:,} | "
            + " | ".join(cells)
            + f" | {gap['local']:.4f} / {gap['dask']:.4f} | {r['measured']} ({r['load_1min']}) |"
        )
    lines += ["", "Targets:", ""]
    lines += _targets(results)
    lines.append(END)
    return "\n".join(lines)


def _targets(results: list[dict]) -> list[str]:
    out = []
    largest = max(results, key=lambda r: r["rows"])
    for engine in ("local", "dask"):
        stage, cell = max(largest[engine].items(), key=lambda kv: kv[1]["tree_rss_mib"])
        peak = cell["tree_rss_mib"]
        out.append(
            f"- peak memory of any stage at {largest['rows']:,} rows, engine {engine}: {peak:,} "
            f"MiB ({stage}; target {TARGET_TREE_MIB:,}): "
            f"{'met' if peak <= TARGET_TREE_MIB else 'MISSED'}"
        )
    total = sum(s["seconds"] for s in largest["local"].values())
    out.append(
        f"- whole pipeline at {largest['rows']:,} rows: {total / 60:.1f} min (target "
        f"{TARGET_PIPELINE_S / 60:.0f} min): {'met' if total <= TARGET_PIPELINE_S else 'MISSED'}"
    )
    smallest = min(results, key=lambda r: r["rows"])
    if len(results) > 1:
        ratio = (total / sum(s["seconds"] for s in smallest["local"].values())) / (
            largest["rows"] / smallest["rows"]
        )
        out.append(
            f"- growth {smallest['rows']:,} to {largest['rows']:,} rows: {ratio:.2f} x linear "
            f"(target at most 1): {'met' if ratio <= 1.0 else 'MISSED'}"
        )
    one_m = next((r for r in results if r["rows"] == 1_000_000), None)
    if one_m is not None:
        seconds = one_m["local"]["validate"]["seconds"]
        out.append(
            f"- validate at 1M rows: {seconds:.1f} s (target {TARGET_VALIDATE_1M_S:.0f} s): "
            f"{'met' if seconds <= TARGET_VALIDATE_1M_S else 'MISSED'}"
        )
    worst = max(abs(r["pr_auc"]["local"] - r["pr_auc"]["dask"]) for r in results)
    out.append(
        f"- largest PR-AUC gap dask vs local: {worst:.4f} (target {TARGET_PR_AUC_GAP}): "
        f"{'met' if worst <= TARGET_PR_AUC_GAP else 'MISSED'}"
    )
    return out


def plot(results: list[dict], path: Path) -> None:
    """Wall time and peak memory of each stage against rows, one line per stage and engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r["rows"] / 1e6 for r in results]
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for engine, stages, style in (("local", STAGES, "-o"), ("dask", ("train", "evaluate"), "--s")):
        for stage in stages:
            label = f"{stage} ({engine})"
            time_axis.plot(rows, [r[engine][stage]["seconds"] for r in results], style, label=label)
            memory_axis.plot(
                rows, [r[engine][stage]["tree_rss_mib"] for r in results], style, label=label
            )
    memory_axis.axhline(TARGET_TREE_MIB, color="red", linewidth=0.8, label="4 GiB target")
    time_axis.set(xlabel="rows (millions)", ylabel="wall time (s)", title="Time per stage")
    memory_axis.set(xlabel="rows (millions)", ylabel="peak MiB (process tree)", title="Memory")
    memory_axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    """Run the benchmark and record it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--out", type=Path, default=REPO / "bench/scale/results.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs/benchmarks.md")
    parser.add_argument("--plot", type=Path, default=REPO / "docs/bench-scale.png")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the sizes --out already holds and run only the others",
    )
    args = parser.parse_args()
    done = {}
    if args.resume and args.out.exists():
        done = {r["rows"]: r for r in json.loads(args.out.read_text()) if r["rows"] in args.rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        if rows in done:
            print(f"{rows:,} rows: kept from {args.out}", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix="argosy-scale-") as tmp:
            done[rows] = bench_size(rows, Path(tmp))
        print(f"{rows:,} rows: {json.dumps(done[rows])}", flush=True)
        results = [done[r] for r in sorted(done)]
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    results = [done[r] for r in sorted(done)]
    command = "python bench/scale/bench.py --rows " + " ".join(map(str, args.rows))
    if tuple(args.rows) == DEFAULT_ROWS:
        command = "make bench-scale"
    write_section(args.doc, markdown(results, command, args.resume), BEGIN, END)
    plot(results, args.plot)


if __name__ == "__main__":
    main()
