"""Where the validate stage's time goes: fixed costs versus the work that grows with the rows.

Run by bench/pipeline/bench.py inside a benchmark repository, with the project's virtualenv. Prints
one JSON object (seconds, and the number of partitions):

- ``python_s``: starting the interpreter (best of 3, ``python -c pass``);
- ``ge_import_s``: a fresh interpreter importing Great Expectations (best of 3);
- ``read_s``: reading the largest partition into the frame the suite runs on;
- ``suite_fixed_s``: the per-partition suite on that partition's first 1,000 rows: Great
  Expectations' per-run cost, paid by every partition whatever its size;
- ``suite_s``: the per-partition suite on the whole partition;
- ``validate_s``: the whole validation in this process (partitions on a LocalCluster, the merged
  verdict, result.json and Data Docs), without the interpreter's start.

Usage: python bench/pipeline/validation_profile.py [--data data] [--contract contract.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
FIXED_ROWS = 1_000


def fresh_interpreter(code: str, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` fresh interpreters running ``code``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """Call ``fn(*args)``; return its result and wall time."""
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> None:
    """Measure and print the profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--contract", type=Path, default=Path("contract.yaml"))
    args = parser.parse_args()
    profile: dict[str, Any] = {
        "python_s": fresh_interpreter("pass"),
        "ge_import_s": fresh_interpreter("import great_expectations"),
    }
    from argosy.data.contract import load_contract
    from argosy.data.partitions import read, scan
    from argosy.validation.partitioned import STRINGS, _runner, naive_time
    from argosy.validation.suite import validate_dir

    contract = load_contract(args.contract)
    data = scan(args.data)
    largest = max(data.partitions, key=lambda p: p.rows)
    table, profile["read_s"] = timed(read, largest, data.schema)
    frame = table.to_pandas(types_mapper=STRINGS.get)
    runner = _runner(contract.model_dump_json(), naive_time(data.schema, contract))
    small = frame.iloc[:FIXED_ROWS].copy()
    runner.run(small)  # the first run pays one-off lazy imports inside the library
    _, profile["suite_fixed_s"] = timed(runner.run, small)
    _, profile["suite_s"] = timed(runner.run, frame)
    with tempfile.TemporaryDirectory() as reports:
        outcome, profile["validate_s"] = timed(validate_dir, args.data, contract, Path(reports))
    if not outcome.success:
        raise SystemExit(outcome.message())
    profile["partitions"] = len(data.partitions)
    profile["rows"] = data.rows
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in profile.items()}))


if __name__ == "__main__":
    main()
