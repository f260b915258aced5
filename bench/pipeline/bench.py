"""Benchmark the local pipeline: per-stage wall time and peak memory, 100k to 20M rows.

Each size runs in a temporary git + DVC repository (a copy of dvc.yaml, params.yaml, src/ and the
production pin) with MLflow on SQLite there. The data are the example's simulator's, in batches of
at most 1M rows (one file each, consecutive periods, as `argosy ingest` adds them), so that the
simulator itself fits in memory at 20M rows. Each stage runs alone (`dvc repro --single-item`), so
its wall time and memory are its own, measured two ways: the largest single process of its tree
(the kernel's high-water mark), and the whole tree (DVC, the stage and any Dask workers) summed
every 0.1 s, an upper bound since forked workers share pages that each one's RSS counts. A final
`dvc repro` with nothing changed measures the no-op check when every stage ran. Results go to a
JSON file and to the "Pipeline" section of docs/benchmarks.md, with the command that produced them.

Usage: python bench/pipeline/bench.py [--rows 100000 1000000] [--stages validate prepare]
    [--out bench/pipeline/results.json] [--doc docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
STAGES = ("validate", "prepare", "train", "evaluate", "gate")
BEGIN, END = "<!-- pipeline:begin -->", "<!-- pipeline:end -->"


START = date(2026, 1, 1)
BATCH_ROWS = 1_000_000
"""The most rows one simulated file holds (the simulator holds a batch in memory)."""
SEED = 20260101
SAMPLE_S = 0.1
TARGET_TREE_MIB = 4096
TARGET_ROWS = 20_000_000


def simulated_days(rows: int, start: date) -> int:
    """About 2,200 rows a day, never past contract.yaml's ``time_range.max`` (validate's bound)."""
    from argosy.data.contract import load_contract

    bound = load_contract(REPO / "contract.yaml").time_range
    span = (date.fromisoformat(bound.max[:10]) - start).days - 1 if bound else rows // 2200
    return max(30, min(rows // 2200, span))


def batches(rows: int) -> list[tuple[int, date, int, int]]:
    """(rows, first day, days, seed) of each simulated file: consecutive periods, distinct ids."""
    days = simulated_days(rows, START)
    count = -(-rows // BATCH_ROWS)
    each = max(1, days // count)
    return [
        (rows // count + (i < rows % count), START + timedelta(days=i * each), each, SEED + i)
        for i in range(count)
    ]


def tree_rss(process: psutil.Process) -> int:
    """Bytes resident in ``process`` and all its descendants now."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """Run ``cmd``; return its wall time (s), its largest process's and its tree's peak (MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        process = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], tree_rss(process))
            except psutil.NoSuchProcess:
                return
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(output.decode(errors="replace"))
        raise SystemExit(f"{' '.join(cmd)} failed")
    return elapsed, usage.ru_maxrss / 1024, peak[0] / 2**20


def setup_repo(rows: int, work: Path) -> tuple[Path, dict[str, str], float]:
    """A git + DVC repository with ``rows`` rows of the example's data; its env, simulate time."""
    root = work / f"rows-{rows}"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml", "contract.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    pin = root / "manifests/overlays/production"
    pin.mkdir(parents=True)
    shutil.copy(REPO / "manifests/overlays/production/model.yaml", pin / "model.yaml")
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv/bin'}{os.pathsep}{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    run = lambda *cmd: subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    simulate_s = 0.0
    for count, start, days, seed in batches(rows):
        options = ["--rows", str(count), "--days", str(days), "--start", str(start)]
        seconds, _, _ = timed(["argosy", "simulate", *options, "--seed", str(seed)], root, env)
        simulate_s += seconds
    run("dvc", "add", "-q", "data")
    run("git", "add", "-A")
    run("git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "b")
    return root, env, simulate_s


def time_stages(rows: int, root: Path, env: dict[str, str], stages: tuple[str, ...]) -> dict:
    """Each stage alone: wall time, largest process's and whole tree's peak memory."""
    out = {}
    for stage in stages:
        seconds, rss, tree = timed(["dvc", "repro", "--single-item", stage], root, env)
        out[stage] = {
            "seconds": round(seconds, 2),
            "peak_rss_mib": round(rss),
            "tree_rss_mib": round(tree),
        }
        print(
            f"{rows:>9} {stage:<9} {seconds:7.1f} s {rss:7.0f} MiB {tree:7.0f} MiB tree", flush=True
        )
    return out


def bench_size(rows: int, work: Path, stages: tuple[str, ...]) -> dict:
    """Set up a repository with ``rows`` rows of the example's data and time ``stages``."""
    root, env, simulate_s = setup_repo(rows, work)
    result = {"rows": rows, "simulate_s": round(simulate_s, 2)}
    result["stages"] = time_stages(rows, root, env, stages)
    if stages == STAGES:
        noop, _, _ = timed(["dvc", "repro"], root, env)
        result["noop_repro_s"] = round(noop, 2)
        result["pipeline_s"] = round(sum(s["seconds"] for s in result["stages"].values()), 2)
        print(f"{rows:>9} pipeline {result['pipeline_s']:7.1f} s, no-op {noop:.1f} s", flush=True)
    if "validate" in stages:
        profile = subprocess.run(
            [REPO / ".venv/bin/python", REPO / "bench/pipeline/validation_profile.py"],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        result["validation_profile"] = json.loads(profile.stdout.splitlines()[-1])
    result["load_1min"] = round(os.getloadavg()[0], 1)
    return result


def _cell(stage: dict | None) -> str:
    if stage is None:
        return "not run"
    tree = stage.get("tree_rss_mib")
    return f"{stage['seconds']:.1f} s / {stage['peak_rss_mib']} MiB" + (
        f" / {tree} MiB" if tree is not None else ""
    )


def markdown(results: list[dict], command: str) -> str:
    """The Pipeline section of docs/benchmarks.md."""
    load = max(r.get("load_1min", float("nan")) for r in results)
    lines = [
        BEGIN,
        "## Pipeline",
        "",
        f"Command: `{command}` ({date.today()}). Machine: {os.cpu_count()} vCPU, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}; highest 1-min "
        f"load average after a size {load:.1f} (2 cores: above 2, other work shared the CPU). "
        "Each stage runs alone (`dvc repro --single-item`). Training runs on the CPU (no GPU "
        "here).",
        "",
        "| rows | " + " | ".join(STAGES) + " | pipeline | no-op `dvc repro` |",
        "|---:|" + "---:|" * (len(STAGES) + 2),
    ]
    for r in results:
        cells = [_cell(r["stages"].get(s)) for s in STAGES]
        whole = [f"{r[k]:.1f} s" if k in r else "not run" for k in ("pipeline_s", "noop_repro_s")]
        lines.append(f"| {r['rows']:,} | " + " | ".join(cells + whole) + " |")
    lines += [
        "",
        "Cells are wall time / peak RSS of the stage's largest process / peak RSS of its whole",
        "process tree (DVC, the stage, Dask workers; summed every 0.1 s, an upper bound: forked",
        "workers share pages each one counts). Stage times include starting Python and importing",
        "the stage's libraries (Great Expectations and MLflow take seconds to import here).",
        "",
    ]
    targets = []
    full = [r for r in results if "pipeline_s" in r]
    if full:
        largest = max(full, key=lambda r: r["rows"])
        targets += [
            (
                f"full pipeline at {largest['rows']:,} rows under 180 s",
                largest["pipeline_s"],
                180.0,
            ),
            ("no-op `dvc repro` under 5 s", largest["noop_repro_s"], 5.0),
        ]
    million = next((r for r in results if r["rows"] == 1_000_000), None)
    if million is not None and "validate" in million["stages"]:
        targets.append(
            (
                "validate stage at 1,000,000 rows at most 15 s",
                million["stages"]["validate"]["seconds"],
                15.0,
            )
        )
    profiled = [r for r in results if "validation_profile" in r]
    if profiled:
        lines += [
            "Where the validate stage's time goes (`bench/pipeline/validation_profile.py`,",
            "in-process after the stage; the suite on a 1,000-row partition is Great Expectations'",
            "per-run cost, paid by every partition):",
            "",
            "| rows | partitions | start Python | start Python + import Great Expectations "
            "| read a partition | suite on 1,000 rows | suite on a partition "
            "| validate in-process |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in profiled:
            v = r["validation_profile"]
            lines.append(
                f"| {r['rows']:,} | {v['partitions']} | {v['python_s']:.2f} s "
                f"| {v['ge_import_s']:.2f} s | {v['read_s']:.2f} s | {v['suite_fixed_s']:.2f} s "
                f"| {v['suite_s']:.2f} s | {v['validate_s']:.2f} s |"
            )
        lines.append("")
    lines.append("Targets:")
    lines += [
        f"- {name}: {value:.1f} s, "
        + ("met" if value <= limit else f"missed by {value - limit:.1f} s")
        for name, value, limit in targets
    ]
    at_target = next((r for r in results if r["rows"] == TARGET_ROWS), None)
    if at_target is not None:
        for stage, m in at_target["stages"].items():
            verdict = "met" if m["tree_rss_mib"] <= TARGET_TREE_MIB else "missed"
            lines.append(
                f"- {stage} at {TARGET_ROWS:,} rows, whole process tree at most 4 GiB: "
                f"{m['tree_rss_mib']} MiB, {verdict}"
            )
    lines += _growth(results)
    lines.append(END)
    return "\n".join(lines)


def _growth(results: list[dict]) -> list[str]:
    """Per stage, how wall time grew against rows from the smallest size to the largest."""
    lines = []
    for stage in STAGES:
        sizes = sorted(
            (r["rows"], r["stages"][stage]["seconds"]) for r in results if stage in r["stages"]
        )
        if len(sizes) < 2:
            continue
        (small, t_small), (large, t_large) = sizes[0], sizes[-1]
        ratio, rows = t_large / t_small, large / small
        verdict = "met" if ratio <= rows else "missed"
        lines.append(
            f"- {stage}, wall time no faster than linear: {ratio:.1f}x the time for {rows:.0f}x "
            f"the rows ({small:,} to {large:,}), {verdict}"
        )
    return lines


def write_section(doc: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the section between ``begin`` and ``end`` of ``doc`` (or append it)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)


def main() -> None:
    """Run the benchmark and record it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES,
        default=list(STAGES),
        help="Stages to time, in pipeline order (each needs the ones before it).",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench/pipeline/results.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs/benchmarks.md")
    parser.add_argument(
        "--render-only", action="store_true", help="Rewrite the doc section from --out, no runs."
    )
    args = parser.parse_args()
    stages = tuple(s for s in STAGES if s in args.stages)
    if stages != STAGES[: len(stages)]:
        parser.error(f"--stages must be the first stages of {' '.join(STAGES)}")
    if args.render_only:
        results = json.loads(args.out.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="argosy-bench-") as tmp:
            results = [bench_size(rows, Path(tmp), stages) for rows in args.rows]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    command = "python bench/pipeline/bench.py --rows " + " ".join(map(str, args.rows))
    if stages != STAGES:
        command += " --stages " + " ".join(stages)
    if args.rows == [100_000, 1_000_000] and stages == STAGES:
        command = "make bench-pipeline"
    write_section(args.doc, markdown(results, command))


if __name__ == "__main__":
    main()
