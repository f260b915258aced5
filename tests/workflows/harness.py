"""A test harness that runs a compiled WorkflowTemplate's tasks on this machine, in order.

This is a test harness, not a runtime. It covers only the subset of Argo semantics the Argosy
templates use, enough to check that the compiled YAML does what `dvc repro` does:

- DAG ``depends`` written as ``a && b`` (Argo's default: each dependency Succeeded or Skipped;
  a Failed dependency stops its dependents);
- workflow parameters (defaults overridden by arguments) and ``{{tasks.X.outputs.parameters.Y}}``;
- output parameters ``valueFrom.path`` (with ``default``), read from the task's own files;
- ``when`` expressions of the form ``LEFT == RIGHT`` / ``LEFT != RIGHT``;
- the exit handler (``onExit``) with ``{{workflow.status}}``;
- git input artifacts, as a ``git clone`` of the (temporary) repository checked out at the revision;
- environment from literals and from ``secretKeyRef`` (looked up in a dict of test secrets).

Each task runs its container's ``command + args`` as a local process; container paths (the
artifact path, ``/tmp``) are mapped to a per-task directory. Anything else (retries, deadlines,
resources, node placement, synchronization) is ignored here and is checked on the YAML instead.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARAM = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
SUPPORTED_WHEN = re.compile(r"^\s*(\S+)\s*(==|!=)\s*(\S+)\s*$")


class HarnessError(AssertionError):
    """The template uses something this harness does not implement."""


@dataclass
class TaskRun:
    """What happened to one task."""

    phase: str  # Succeeded | Failed | Skipped | Omitted
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""
    seconds: float = 0.0  # wall time of the task's "pod", to see where a slow run spends it


@dataclass
class DagRun:
    """The outcome of a run: the workflow status, each task, the exit handler."""

    status: str
    tasks: dict[str, TaskRun]
    exit_handler: TaskRun | None
    order: list[str]


class LocalDagRun:
    """Run a WorkflowTemplate's DAG locally (see the module docstring for what is covered).

    Args:
        template: The compiled WorkflowTemplate document.
        workdir: Scratch directory for the task "pods".
        arguments: Workflow parameters overriding the template's defaults.
        secrets: ``{(secret name, key): value}`` for ``secretKeyRef`` variables.
        path: PATH for the task processes (where ``argosy`` and ``dvc`` are found).
    """

    def __init__(
        self,
        template: dict[str, Any],
        workdir: Path,
        arguments: dict[str, str],
        secrets: dict[tuple[str, str], str],
        path: str,
    ) -> None:
        self.spec = template["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.workdir = workdir
        self.secrets = secrets
        self.path = path
        defaults = {p["name"]: p.get("value") for p in self.spec["arguments"]["parameters"]}
        unknown = set(arguments) - set(defaults)
        if unknown:
            raise HarnessError(f"unknown workflow parameters {sorted(unknown)}")
        self.params = {**defaults, **arguments}
        missing = [k for k, v in self.params.items() if v is None]
        if missing:
            raise HarnessError(f"workflow parameters without a value: {missing}")
        self.runs: dict[str, TaskRun] = {}
        self.status = "Running"

    def substitute(self, text: str) -> str:
        """Replace every ``{{...}}`` reference the harness knows; fail on any other."""

        def value(match: re.Match[str]) -> str:
            ref = match.group(1)
            if ref.startswith("workflow.parameters."):
                return str(self.params[ref.removeprefix("workflow.parameters.")])
            if ref == "workflow.status":
                return self.status
            task_ref = re.fullmatch(r"tasks\.([-\w]+)\.outputs\.parameters\.([-\w]+)", ref)
            if task_ref:
                return self.runs[task_ref.group(1)].outputs[task_ref.group(2)]
            raise HarnessError(f"unsupported reference {{{{{ref}}}}}")

        return PARAM.sub(value, text)

    def _when(self, expression: str) -> bool:
        match = SUPPORTED_WHEN.match(self.substitute(expression))
        if not match:
            raise HarnessError(f"unsupported when expression {expression!r}")
        left, op, right = match.groups()
        return (left == right) if op == "==" else (left != right)

    def _run_container(self, name: str, template: dict[str, Any]) -> TaskRun:
        started = time.monotonic()
        pod = self.workdir / f"{len(self.runs):02d}-{name}"
        scratch = pod / "tmp"
        scratch.mkdir(parents=True)
        mounts = {"/tmp": scratch}
        for artifact in template.get("inputs", {}).get("artifacts", []):
            git = artifact.get("git")
            if git is None:
                raise HarnessError(f"{name}: only git input artifacts are supported")
            local = pod / "artifacts" / artifact["name"]
            subprocess.run(
                ["git", "clone", "-q", "--no-checkout", self.substitute(git["repo"]), str(local)],
                check=True,
            )
            subprocess.run(
                ["git", "checkout", "-q", self.substitute(git["revision"])], cwd=local, check=True
            )
            mounts[artifact["path"]] = local

        def local_path(text: str) -> str:
            for container_path, host in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                if text == container_path or text.startswith(container_path + "/"):
                    return str(host) + text[len(container_path) :]
            return text

        container = template["container"]
        env = {"PATH": self.path, "LANG": "C.UTF-8"}
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = self.substitute(local_path(var["value"]))
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self.secrets[(ref["name"], ref["key"])]
        argv = [
            self.substitute(local_path(a)) for a in container["command"] + container.get("args", [])
        ]
        proc = subprocess.run(
            argv,
            cwd=local_path(container.get("workingDir", "/tmp")),
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        outputs = {}
        for param in template.get("outputs", {}).get("parameters", []):
            source = Path(local_path(param["valueFrom"]["path"]))
            if source.is_file():
                outputs[param["name"]] = source.read_text().strip()
            elif "default" in param["valueFrom"]:
                outputs[param["name"]] = param["valueFrom"]["default"]
            else:
                raise HarnessError(f"{name}: output {param['name']} missing at {source}")
        phase = "Succeeded" if proc.returncode == 0 else "Failed"
        log = f"$ {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}"
        return TaskRun(phase, outputs, log, time.monotonic() - started)

    def run(self) -> DagRun:
        """Run every task in dependency order, then the exit handler."""
        dag = self.templates[self.spec["entrypoint"]]["dag"]
        tasks = {t["name"]: t for t in dag["tasks"]}
        order: list[str] = []
        while len(self.runs) < len(tasks):
            progressed = False
            for name, task in tasks.items():
                if name in self.runs:
                    continue
                depends = [d for d in task.get("depends", "").split(" && ") if d]
                if any(not re.fullmatch(r"[-\w]+", d) for d in depends):
                    raise HarnessError(f"{name}: unsupported depends {task['depends']!r}")
                if not all(d in self.runs for d in depends):
                    continue
                progressed = True
                if any(self.runs[d].phase in {"Failed", "Omitted"} for d in depends):
                    self.runs[name] = TaskRun("Omitted")
                elif "when" in task and not self._when(task["when"]):
                    self.runs[name] = TaskRun("Skipped")
                else:
                    order.append(name)
                    self.runs[name] = self._run_container(name, self.templates[task["template"]])
            if not progressed:
                raise HarnessError("DAG has unsatisfiable dependencies")
        failed = any(r.phase == "Failed" for r in self.runs.values())
        self.status = "Failed" if failed else "Succeeded"
        exit_run = None
        if "onExit" in self.spec:
            exit_run = self._run_container("exit", self.templates[self.spec["onExit"]])
        return DagRun(self.status, dict(self.runs), exit_run, order)
