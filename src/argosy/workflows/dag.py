"""The DVC pipeline as a DAG of stages: the single source of the Argo training tasks."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml


class PipelineError(ValueError):
    """dvc.yaml is missing, malformed, or uses a feature the workflow generator does not support."""


@dataclass(frozen=True)
class Stage:
    """One DVC stage, as the workflow generator needs it.

    Attributes:
        name: The stage name (also the Argo task name).
        cmd: The command DVC runs, as argv.
        deps: Paths the stage reads.
        outs: Paths the stage writes (outs, metrics and plots).
        upstream: Names of the stages whose outputs this stage reads, in dvc.yaml order.
    """

    name: str
    cmd: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    upstream: tuple[str, ...]


def _paths(entries: list[Any] | None) -> list[str]:
    paths = []
    for entry in entries or []:
        if isinstance(entry, str):
            paths.append(entry)
        elif isinstance(entry, dict) and len(entry) == 1:
            paths.append(next(iter(entry)))
        else:
            raise PipelineError(f"unsupported dvc.yaml path entry: {entry!r}")
    return paths


def _within(path: str, out: str) -> bool:
    p, o = PurePosixPath(path), PurePosixPath(out)
    return p == o or o in p.parents or p in o.parents


def parse_pipeline(raw: object) -> list[Stage]:
    """Turn a loaded dvc.yaml into stages with their upstream stages, in dependency order.

    A stage depends on another when one of its ``deps`` is, contains or lies inside one of the
    other's outputs: exactly the edges DVC draws.

    Args:
        raw: The parsed dvc.yaml document.

    Returns:
        The stages, topologically sorted (ties keep dvc.yaml order).

    Raises:
        PipelineError: No stages, a ``foreach``/``matrix`` stage, a missing ``cmd``, two stages
            writing the same path, or a cycle.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("stages"), dict) or not raw["stages"]:
        raise PipelineError("dvc.yaml has no `stages:` mapping")
    declared: dict[str, tuple[tuple[str, ...], list[str], list[str]]] = {}
    for name, spec in raw["stages"].items():
        if not isinstance(spec, dict) or "cmd" not in spec:
            raise PipelineError(f"stage {name!r}: needs a `cmd` (foreach/matrix are not supported)")
        cmd = spec["cmd"]
        if not isinstance(cmd, str):
            raise PipelineError(f"stage {name!r}: `cmd` must be one command string")
        outs = _paths(spec.get("outs")) + _paths(spec.get("metrics")) + _paths(spec.get("plots"))
        declared[name] = (tuple(shlex.split(cmd)), _paths(spec.get("deps")), outs)

    producers: dict[str, str] = {}
    for name, (_, _, outs) in declared.items():
        for out in outs:
            for other_out, other in producers.items():
                if other != name and _within(out, other_out):
                    raise PipelineError(f"stages {other!r} and {name!r} both write {out!r}")
            producers[out] = name

    upstream: dict[str, tuple[str, ...]] = {}
    for name, (_, deps, _) in declared.items():
        found = {
            producer
            for dep in deps
            for out, producer in producers.items()
            if producer != name and _within(dep, out)
        }
        upstream[name] = tuple(n for n in declared if n in found)

    ordered: list[Stage] = []
    done: set[str] = set()
    while len(ordered) < len(declared):
        ready = [n for n in declared if n not in done and set(upstream[n]) <= done]
        if not ready:
            raise PipelineError(f"dvc.yaml has a cycle among {sorted(set(declared) - done)}")
        for name in ready:
            cmd, deps, outs = declared[name]
            ordered.append(Stage(name, cmd, tuple(deps), tuple(outs), upstream[name]))
            done.add(name)
    return ordered


def load_pipeline(path: Path = Path("dvc.yaml")) -> list[Stage]:
    """Read dvc.yaml and return its stages in dependency order (see :func:`parse_pipeline`)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such file (run from the repository root)") from None
    return parse_pipeline(raw)
