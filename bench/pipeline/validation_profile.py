"""Where the validate stage's time goes: fixed costs versus the work that grows with the rows.

Run by bench/pipeline/bench.py inside a benchmark repository, with the project's virtualenv. Prints
one JSON object (seconds):

- ``python_s``: starting the interpreter (best of 3, ``python -c pass``);
- ``ge_import_s``: a fresh interpreter importing Great Expectations (best of 3);
- ``read_s``: reading the Parquet files into the frame the suite runs on;
- ``suite_fixed_s``: the whole suite on the first 1,000 rows (no Data Docs): Great Expectations'
  per-run cost, paid whatever the size;
- ``suite_s``: the whole suite on every row (no Data Docs);
- ``data_docs_s``: the suite on every row with Data Docs, minus ``suite_s``.

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
    profile = {
        "python_s": fresh_interpreter("pass"),
        "ge_import_s": fresh_interpreter("import great_expectations"),
    }
    from argosy.data.contract import load_contract
    from argosy.validation.suite import read_raw, validate_frame

    params = load_contract(args.contract)
    (frame, failures), profile["read_s"] = timed(read_raw, args.data)
    if frame is None:
        raise SystemExit(f"unreadable data: {failures}")
    small = frame.iloc[:FIXED_ROWS].copy()
    validate_frame(small, params)  # first run pays one-off lazy imports inside the library
    outcome, profile["suite_fixed_s"] = timed(validate_frame, small, params)
    outcome, profile["suite_s"] = timed(validate_frame, frame, params)
    if not outcome.success:
        raise SystemExit(outcome.message())
    with tempfile.TemporaryDirectory() as docs:
        _, with_docs = timed(validate_frame, frame, params, Path(docs) / "data_docs")
    profile["data_docs_s"] = max(0.0, with_docs - profile["suite_s"])
    profile["rows"] = len(frame)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in profile.items()}))


if __name__ == "__main__":
    main()
