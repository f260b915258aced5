"""The layering of docs/architecture.md, checked on the source: who may import whom.

Every ``argosy`` import (module level or inside a function) is read from the source with ``ast``.
A module may import its own package and the layers below its own, never a sibling stage or the
orchestration above; and no two packages import each other.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import yaml

SRC = Path(__file__).resolve().parents[2] / "src"
REPO = SRC.parent

#: Layers, lowest first. A unit is a top-level module or package of ``argosy``, or a module of
#: ``argosy.data`` (whose contract and encoder sit at the bottom, its stages above).
LAYERS: tuple[tuple[str, ...], ...] = (
    # contracts and helpers: each owns one shared format or tool
    (
        "hashing",
        "yamlfile",
        "files",
        "proc",
        "config",
        "data.contract",
        "data.encoding",
        "data.partitions",
        "pin",
        "modeldir",
        "gatereport",
        "predlog",
        "tracking",
        "signing",
        "k8s",
        "webassets",
        "examples",
        "images",
    ),
    # stores: the MLflow registry and git
    ("registry", "gitops"),
    # stages: each a step of the loop
    (
        "data.pinned",
        "data.prepare",
        "data.profile",
        "data.synthetic",
        "validation",
        "training",
        "evaluation",
        "serving",
        "monitoring",
    ),
    # orchestration of the loop and its cluster form
    ("loop", "workflows"),
    # the command line
    ("cli",),
)
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}
#: Units of one layer above the first that may import each other (one way: no cycles). In the
#: first layer, helpers serve the contracts beside them.
SAME_LAYER_ALLOWED = {("gitops", "registry"), ("workflows", "loop")}


def unit_of(module: str) -> str | None:
    """``argosy.data.contract`` -> ``data.contract``; ``argosy.cli.gitops`` -> ``cli``."""
    parts = module.split(".")
    if parts[0] != "argosy" or len(parts) == 1:
        return None
    if parts[1] == "data" and len(parts) > 2:
        return f"data.{parts[2]}"
    return parts[1]


def argosy_modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "argosy").rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        if "web" in rel.parts or "proto" in rel.parts:
            continue
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found[name] = path
    return found


def imports_of(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("argosy")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name.startswith("argosy"):
                out.add(name)
                out |= {f"{name}.{a.name}" for a in node.names}
    modules = argosy_modules()
    return {m for m in out if m in modules}


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in argosy_modules().items():
        here = unit_of(module)
        if here in (None, "data", "__main__"):
            continue
        for target in imports_of(path, module):
            there = unit_of(target)
            if there not in (None, "data", here):
                graph[here].add(there)
    return graph


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(m) for m in argosy_modules()} - {None, "data", "__main__"}
    assert sorted(units - set(LAYER_OF)) == []


def test_imports_go_down_the_layers_never_sideways_between_stages() -> None:
    wrong = []
    for here, targets in sorted(unit_graph().items()):
        for there in sorted(targets):
            up = LAYER_OF[there] > LAYER_OF[here]
            sideways = (
                LAYER_OF[there] == LAYER_OF[here] > 0 and (here, there) not in SAME_LAYER_ALLOWED
            )
            if up or sideways:
                wrong.append(f"{here} (layer {LAYER_OF[here]}) imports {there} ({LAYER_OF[there]})")
    assert wrong == []


def test_no_two_packages_import_each_other() -> None:
    graph = unit_graph()
    packages: dict[str, set[str]] = defaultdict(set)
    for here, targets in list(graph.items()):
        packages[here.split(".")[0]] |= {t.split(".")[0] for t in targets} - {here.split(".")[0]}
    loops = sorted(
        f"{a} <-> {b}"
        for a in list(packages)
        for b in packages[a]
        if a < b and a in packages.get(b, ())
    )
    assert loops == []


def test_each_stage_lists_the_modules_it_imports_as_dependencies() -> None:
    """dvc.yaml: a stage reruns when any module its command runs changes, contracts included."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    entry = {
        "validate": "argosy.validation.suite",
        "prepare": "argosy.data.prepare",
        "train": "argosy.training.train",
        "evaluate": "argosy.evaluation.metrics",
        "gate": "argosy.evaluation.gate",
    }
    modules = argosy_modules()
    missing = {}
    for stage, start in entry.items():
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            todo += sorted(imports_of(modules[module], module) - seen)
        deps = [str(d) for d in stages[stage].get("deps", [])]
        files = {
            str(modules[m].relative_to(REPO)) for m in seen if modules[m].name != "__init__.py"
        }
        uncovered = sorted(
            f for f in files if not any(f == d or f.startswith(f"{d}/") for d in deps)
        )
        if uncovered:
            missing[stage] = uncovered
    assert missing == {}
