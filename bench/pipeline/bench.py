"""Benchmark the local pipeline: per-stage wall time and peak RSS at 100k and 1M rows.

Each size runs in a temporary git + DVC repository (a copy of dvc.yaml, params.yaml, src/ and the
production pin) with MLflow on SQLite there. Each stage runs alone (`dvc repro --single-item`),
so its wall time and the peak RSS of its process tree are its own. A final `dvc repro` with nothing
changed measures the no-op check. Results go to a JSON file and to the "Pipeline" section of
docs/benchmarks.md, with the command that produced them.

Usage: python bench/pipeline/bench.py [--rows 100000 1000000] [--out bench/pipeline/results.json]
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
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGES = ("validate", "prepare", "train", "evaluate", "gate")
BEGIN, END = "<!-- pipeline:begin -->", "<!-- pipeline:end -->"


START = date(2026, 1, 1)


def simulated_days(rows: int, start: date) -> int:
    """About 2,200 rows a day, never past contract.yaml's ``time_range.max`` (validate's bound)."""
    from argosy.data.contract import load_contract

    bound = load_contract(REPO / "contract.yaml").time_range
    span = (date.fromisoformat(bound.max[:10]) - start).days - 1 if bound else rows // 2200
    return max(30, min(rows // 2200, span))


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd``; return its wall time (s) and the peak RSS (MiB) of its largest process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(output.decode(errors="replace"))
        raise SystemExit(f"{' '.join(cmd)} failed")
    return elapsed, usage.ru_maxrss / 1024


def bench_size(rows: int, work: Path) -> dict:
    """Set up a repository with ``rows`` rows of the example's data and time every stage."""
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
    days = simulated_days(rows, START)
    simulate_s, _ = timed(
        [
            "argosy",
            "simulate",
            "--rows",
            str(rows),
            "--days",
            str(days),
            "--start",
            str(START),
        ],
        root,
        env,
    )
    run("dvc", "add", "-q", "data")
    run("git", "add", "-A")
    run("git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "b")
    result = {"rows": rows, "simulate_s": round(simulate_s, 2), "stages": {}}
    for stage in STAGES:
        seconds, rss = timed(["dvc", "repro", "--single-item", stage], root, env)
        result["stages"][stage] = {"seconds": round(seconds, 2), "peak_rss_mib": round(rss)}
        print(f"{rows:>9} {stage:<9} {seconds:7.1f} s {rss:7.0f} MiB", flush=True)
    noop, _ = timed(["dvc", "repro"], root, env)
    result["noop_repro_s"] = round(noop, 2)
    profile = subprocess.run(
        [REPO / ".venv/bin/python", REPO / "bench/pipeline/validation_profile.py"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result["validation_profile"] = json.loads(profile.stdout.splitlines()[-1])
    result["pipeline_s"] = round(sum(s["seconds"] for s in result["stages"].values()), 2)
    result["load_1min"] = round(os.getloadavg()[0], 1)
    print(f"{rows:>9} pipeline {result['pipeline_s']:7.1f} s, no-op repro {noop:.1f} s", flush=True)
    return result


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
        "Each stage runs alone (`dvc repro --single-item`); peak "
        "RSS is the largest process of the stage's tree. Training runs on the CPU (no GPU here).",
        "",
        "| rows | " + " | ".join(STAGES) + " | pipeline | no-op `dvc repro` |",
        "|---:|" + "---:|" * (len(STAGES) + 2),
    ]
    for r in results:
        cells = [
            f"{r['stages'][s]['seconds']:.1f} s / {r['stages'][s]['peak_rss_mib']} MiB"
            for s in STAGES
        ]
        lines.append(
            f"| {r['rows']:,} | "
            + " | ".join(cells)
            + f" | {r['pipeline_s']:.1f} s | {r['noop_repro_s']:.1f} s |"
        )
    lines += [
        "",
        "Cells are wall time / peak RSS. Stage times include starting Python and importing",
        "the stage's libraries (Great Expectations and MLflow take seconds to import here).",
        "",
    ]
    largest = max(results, key=lambda r: r["rows"])
    targets = [
        (f"full pipeline at {largest['rows']:,} rows under 180 s", largest["pipeline_s"], 180.0),
        ("no-op `dvc repro` under 5 s", largest["noop_repro_s"], 5.0),
    ]
    # The old "validate 1M rows in 5 s" target is retired: importing Great Expectations and its
    # per-run cost alone exceed it here. Issue 15's target, at 1M rows: at most 15 s.
    million = next((r for r in results if r["rows"] == 1_000_000), None)
    if million is not None:
        targets.append(
            (
                "validate stage at 1,000,000 rows at most 15 s",
                million["stages"]["validate"]["seconds"],
                15.0,
            )
        )
    lines += [
        "Where the validate stage's time goes (`bench/pipeline/validation_profile.py`, in-process",
        "after the stage; the suite on 1,000 rows is Great Expectations' per-run cost, paid at any",
        "size):",
        "",
        "| rows | start Python | start Python + import Great Expectations | read Parquet "
        "| suite on 1,000 rows | suite on all rows | Data Docs |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        v = r["validation_profile"]
        lines.append(
            f"| {r['rows']:,} | {v['python_s']:.2f} s | {v['ge_import_s']:.2f} s "
            f"| {v['read_s']:.2f} s | {v['suite_fixed_s']:.2f} s | {v['suite_s']:.2f} s "
            f"| {v['data_docs_s']:.2f} s |"
        )
    floor = largest["validation_profile"]
    floor_s = floor["ge_import_s"] + floor["suite_fixed_s"]
    lines += [
        "",
        f"Before it reads a row, a validation with Great Expectations costs {floor_s:.1f} s here "
        f"(import {floor['ge_import_s']:.1f} s + the suite's per-run cost "
        f"{floor['suite_fixed_s']:.1f} s)" + ".",
        "",
    ]
    lines.append("Targets:")
    lines += [
        f"- {name}: {value:.1f} s, "
        + ("met" if value <= limit else f"missed by {value - limit:.1f} s")
        for name, value, limit in targets
    ]
    lines.append(END)
    return "\n".join(lines)


def write_section(doc: Path, section: str) -> None:
    """Replace the Pipeline section of ``doc`` (or append it)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)


def main() -> None:
    """Run the benchmark and record it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=REPO / "bench/pipeline/results.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs/benchmarks.md")
    parser.add_argument(
        "--render-only", action="store_true", help="Rewrite the doc section from --out, no runs."
    )
    args = parser.parse_args()
    if args.render_only:
        results = json.loads(args.out.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="argosy-bench-") as tmp:
            results = [bench_size(rows, Path(tmp)) for rows in args.rows]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    command = (
        "make bench-pipeline"
        if args.rows == [100_000, 1_000_000]
        else ("python bench/pipeline/bench.py --rows " + " ".join(map(str, args.rows)))
    )
    write_section(args.doc, markdown(results, command))


if __name__ == "__main__":
    main()
