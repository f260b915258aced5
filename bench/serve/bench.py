"""Benchmark Argosy's model server against MLServer, `mlflow models serve` and KServe's ModelServer.

Same model (an XGBoost classifier exported to ONNX, served by ONNX Runtime with one intra-op thread
everywhere), same machine, same load generators (wrk for REST, h2load for gRPC; one thread each).
For each server: cold start (process launch to the first successful inference, median of 3), then
throughput and p50/p99 latency at concurrency 1 and 16 with 1-row and 100-row requests: V2 JSON
over REST, then, for the servers that speak V2 gRPC (Argosy, MLServer, KServe's ModelServer),
``ModelInfer`` with typed FP32 contents over gRPC on the same process ("<name> grpc" rows).
Argosy runs with adaptive batching (its default) and again with ``--no-batching``. Peers are
installed in their own virtualenvs under bench/.work/ from the pinned requirements files next to
this script. Results go to bench/.work/serve-results.json and into the "Serving" section of
docs/benchmarks.md.

Run: `make bench-serve` (or `.venv/bin/python bench/serve/bench.py --help`).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORK = REPO / "bench" / ".work"
MAIN_PY = Path(sys.executable)
N_FEATURES = 30
BEGIN, END = "<!-- serving:begin -->", "<!-- serving:end -->"


def sh(cmd: list[str], **kw: object) -> None:
    """Run a command, failing loudly."""
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def ensure_wrk() -> str:
    """Find wrk, installing Debian's package when running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    sh(["apt-get", "update", "-qq"])
    sh(["apt-get", "install", "-y", "-qq", "wrk"])
    return shutil.which("wrk") or sys.exit("wrk install failed")


def ensure_h2load() -> str:
    """Find h2load (gRPC load), installing Debian's nghttp2-client when running as root."""
    found = shutil.which("h2load")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("h2load is not installed: apt-get install -y nghttp2-client")
    sh(["apt-get", "update", "-qq"])
    sh(["apt-get", "install", "-y", "-qq", "nghttp2-client"])
    return shutil.which("h2load") or sys.exit("h2load install failed")


def ensure_venv(name: str, requirements: Path) -> Path:
    """A virtualenv under bench/.work with exactly the pinned requirements."""
    env = WORK / name
    stamp = env / ".requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return env
    shutil.rmtree(env, ignore_errors=True)
    sh(["python3", "-m", "venv", str(env)])
    sh([str(env / "bin" / "pip"), "install", "-q", "-r", str(requirements)])
    stamp.write_text(digest)
    return env


def make_model(out: Path, seed: int = 0) -> None:
    """Train a stand-in model (100 trees of depth 6, 30 features) when the pipeline has none."""
    if (out / "model.onnx").exists():
        return
    import numpy as np
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    rng = np.random.default_rng(seed)
    n = 20_000
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    x[:, :3] = rng.integers(0, 4, size=(n, 3))
    logit = 1.5 * x[:, 6] - x[:, 7] + 0.5 * x[:, 8] * x[:, 9] + (x[:, 0] == 2) - 3.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    clf = xgb.XGBClassifier(n_estimators=100, max_depth=6, random_state=seed).fit(x, y)
    onx = onnxmltools.convert_xgboost(
        clf, initial_types=[("features", FloatTensorType([None, N_FEATURES]))]
    )
    out.mkdir(parents=True, exist_ok=True)
    data = onx.SerializeToString()
    (out / "model.onnx").write_bytes(data)
    features = [f"f{i:02d}" for i in range(N_FEATURES)]
    specs = [
        {"name": f, "allow_nan": i >= 3, "categories": ["a", "b", "c", "d"] if i < 3 else None}
        for i, f in enumerate(features)
    ]
    meta = {
        "name": "bench-model",
        "version": "1",
        "features": features,
        "feature_specs": specs,
        "input_name": "features",
        "threshold": 0.5,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=2))


def make_mlflow_model(model_dir: Path, out: Path) -> None:
    """The same ONNX file as an MLflow pyfunc model (mlflow.onnx flavour)."""
    if (out / "MLmodel").exists():
        return
    import mlflow.onnx
    import numpy as np
    import onnx
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    sig = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(SPECS)), "features")])
    )
    mlflow.onnx.save_model(onnx.load(model_dir / "model.onnx"), str(out), signature=sig)


def model_name(model_dir: Path) -> str:
    """The served model's name, as its metadata.json (from the data contract) gives it."""
    return str(json.loads((model_dir / "metadata.json").read_text())["name"])


def make_mlserver_dir(model_dir: Path, out: Path, port: int, parallel_workers: int | None) -> None:
    """An MLServer repository: the custom ONNX runtime, model-settings.json and settings.json."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_dir / "model.onnx", out / "model.onnx")
    shutil.copy(HERE / "peers" / "mlserver_onnx.py", out / "mlserver_onnx.py")
    (out / "model-settings.json").write_text(
        json.dumps(
            {
                "name": model_name(model_dir),
                "implementation": "mlserver_onnx.OnnxClassifier",
                "parameters": {"uri": "./model.onnx"},
            }
        )
    )
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": port + 1,
        "metrics_port": port + 2,
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (out / "settings.json").write_text(json.dumps(settings))


SPECS: list[dict] = []  # the served model's feature_specs, set in main()


def rows(n: int) -> list[list[float]]:
    """Deterministic rows that pass the served model's feature contract."""
    import numpy as np

    rng = np.random.default_rng(n)
    out = np.empty((n, len(SPECS)), dtype=np.float32)
    for j, spec in enumerate(SPECS):
        if spec.get("categories"):
            out[:, j] = rng.integers(0, len(spec["categories"]), size=n)
        elif spec.get("type") == "boolean":
            out[:, j] = rng.integers(0, 2, size=n)
        else:
            lo = spec.get("minimum") or 0.0
            hi = min(spec.get("maximum") or lo + 10.0, lo + 1000.0)
            out[:, j] = rng.uniform(lo, hi, size=n)
    return [[round(float(v), 6) for v in r] for r in out]


def v2_body(n: int) -> bytes:
    """A V2 request with one [n, F] FP32 tensor."""
    flat = [v for r in rows(n) for v in r]
    tensor = {"name": "features", "shape": [n, len(SPECS)], "datatype": "FP32", "data": flat}
    return json.dumps({"inputs": [tensor]}).encode()


def grpc_message(name: str, n: int) -> bytes:
    """A serialised ``ModelInferRequest``: one [n, F] FP32 tensor in typed contents."""
    from argosy.serving.proto import grpc_predict_v2_pb2 as pb  # the bench's own process only

    req = pb.ModelInferRequest(model_name=name)
    tensor = req.inputs.add(name="features", datatype="FP32", shape=[n, len(SPECS)])
    tensor.contents.fp32_contents.extend(v for r in rows(n) for v in r)
    return req.SerializeToString()


def check_grpc(port: int, name: str) -> None:
    """One real ModelInfer call: h2load counts HTTP 200s, and a gRPC error is an HTTP 200 too."""
    import grpc

    from argosy.serving.proto import grpc_predict_v2_pb2 as pb
    from argosy.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        resp = stub.ModelInfer(pb.ModelInferRequest.FromString(grpc_message(name, 1)), timeout=30)
    if not resp.outputs:
        raise RuntimeError(f"gRPC on {port} answered no outputs")


def run_h2load(h2load: str, s: Server, n_rows: int, conc: int, seconds: int) -> dict[str, float]:
    """One gRPC cell: requests/s, p50 and p99 in ms (from h2load's per-request log)."""
    msg = grpc_message(s.model, n_rows)
    body_file = WORK / f"grpc-{s.name.replace(' ', '_')}-{n_rows}.bin"
    body_file.write_bytes(b"\x00" + len(msg).to_bytes(4, "big") + msg)
    log_file = WORK / f"h2load-{s.name.replace(' ', '_')}.log"
    log_file.unlink(missing_ok=True)  # h2load appends to its log
    url = f"http://127.0.0.1:{s.grpc_port}/inference.GRPCInferenceService/ModelInfer"
    cmd = [h2load, "-t1", f"-c{conc}", "-m1", f"-D{seconds}", "--warm-up-time=1",
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", str(body_file), f"--log-file={log_file}", url]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    latencies = []
    for line in log_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            latencies.append(int(parts[2]) / 1000.0)
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    failed = re.search(r"(\d+) failed, (\d+) errored", out)
    return {
        "rps": float(m.group(2)) if m else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "non_2xx": sum(int(g) for g in codes.groups()[1:]) if codes else 0,
        "socket_errors": f"{failed.group(1)} failed, {failed.group(2)} errored" if failed else "",
    }


def mlflow_body(n: int) -> bytes:
    """An MLflow scoring-server request (tensor input)."""
    return json.dumps({"inputs": rows(n)}).encode()


@dataclass
class Server:
    """A server under test."""

    name: str
    cmd: list[str]
    port: int
    path: str
    body: object  # Callable[[int], bytes]
    cwd: Path = REPO
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""
    grpc_port: int | None = None  # V2 gRPC on the same process, measured as "<name> grpc"
    model: str = ""  # the model name gRPC requests address


def start(s: Server) -> tuple[subprocess.Popen[bytes], float]:
    """Launch and poll with an inference request; return the process and its cold start."""
    env = {**os.environ, **s.env}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    log = (WORK / f"{s.name.replace(' ', '_')}.log").open("ab")
    body = s.body(1)  # type: ignore[operator]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        s.cmd, cwd=s.cwd, env=env, stdout=log, stderr=log, start_new_session=True
    )
    while time.monotonic() - t0 < 120:
        if proc.poll() is not None:
            raise RuntimeError(f"{s.name} exited with {proc.returncode}; see {log.name}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=2)
            conn.request("POST", s.path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return proc, time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.005)
    stop(proc)
    raise RuntimeError(f"{s.name} did not answer within 120 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL after 15 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)
    except ProcessLookupError:
        pass


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def group_cpu_s(pgid: int) -> float:
    """CPU seconds, user plus system, of every live process in the process group ``pgid``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # after the command's ")": state, ppid, pgrp, ..., utime (12th), stime (13th)
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # a process that exited meanwhile
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(
    wrk: str, s: Server, n_rows: int, conc: int, seconds: int, pgid: int | None = None
) -> dict[str, float]:
    """One wrk cell: requests/s, p50 and p99 in ms, non-2xx count.

    With ``pgid`` (the server's process group) also ``cpu_us``: the server's CPU microseconds
    a request, user plus system, over the cell.
    """
    body = s.body(n_rows)  # type: ignore[operator]
    body_file = WORK / f"body-{s.name.replace(' ', '_')}-{n_rows}.json"
    body_file.write_bytes(body)
    script = WORK / f"post-{s.name.replace(' ', '_')}-{n_rows}.lua"
    script.write_text(
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    url = f"http://127.0.0.1:{s.port}{s.path}"
    cmd = [wrk, "-t1", f"-c{conc}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    cpu_before = group_cpu_s(pgid) if pgid is not None else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = group_cpu_s(pgid) - cpu_before if pgid is not None else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cell = {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }
    if pgid is not None and requests:
        cell["cpu_us"] = cpu / requests * 1e6
    return cell


def servers(model_dir: Path, mlserver: Path, kserve: Path) -> list[Server]:
    """Every server under test, each with its own port."""
    mlflow_model = WORK / "mlflow_model"
    make_mlflow_model(model_dir, mlflow_model)
    ms_default, ms_inproc = WORK / "mlserver-default", WORK / "mlserver-pw0"
    make_mlserver_dir(model_dir, ms_default, 18710, None)
    make_mlserver_dir(model_dir, ms_inproc, 18720, 0)
    predlog = WORK / "predictions"
    shutil.rmtree(predlog, ignore_errors=True)
    name = model_name(model_dir)
    infer = f"/v2/models/{name}/infer"
    main_bin = str(MAIN_PY.parent)
    path_env = {"PATH": main_bin + os.pathsep + os.environ.get("PATH", "")}
    src_env = {"PYTHONPATH": str(REPO / "src")}
    mlflow_cmd = [str(MAIN_PY.parent / "mlflow"), "models", "serve", "-m", str(mlflow_model)]
    mlflow_cmd += ["--env-manager", "local", "-h", "127.0.0.1"]
    return [
        Server(
            "argosy",
            [str(MAIN_PY), "-m", "argosy.serving", "--model-dir", str(model_dir), "--port", "18700",
             "--grpc-port", "18701", "--prediction-log", str(predlog), "--log-level", "WARNING"],
            18700, infer, v2_body, env=src_env, grpc_port=18701, model=name,
            note="prediction log on (Parquet, every row), adaptive batching on (the default)",
        ),
        Server(
            "argosy no-batching",
            [str(MAIN_PY), "-m", "argosy.serving", "--model-dir", str(model_dir), "--port", "18702",
             "--grpc-port", "off", "--no-batching", "--prediction-log", str(predlog),
             "--log-level", "WARNING"],
            18702, infer, v2_body, env=src_env,
            note="`--no-batching`: one ONNX Runtime call per request; prediction log on",
        ),
        Server(
            "argosy constant",
            [str(MAIN_PY), str(HERE / "peers" / "constant.py"), str(model_dir), "18705"],
            18705, infer, v2_body, env=src_env,
            note="same HTTP stack, fixed response, no parsing/inference",
        ),
        Server(
            "mlserver",
            [str(mlserver / "bin" / "mlserver"), "start", "."], 18710, infer, v2_body,
            cwd=ms_default, grpc_port=18711, model=name,
            note="MLServer 1.7.1 defaults (1 parallel worker)",
        ),
        Server(
            "mlserver pw0",
            [str(mlserver / "bin" / "mlserver"), "start", "."], 18720, infer, v2_body,
            cwd=ms_inproc, grpc_port=18721, model=name,
            note="parallel_workers: 0 (inference in the HTTP process)",
        ),
        Server(
            "mlflow",
            [*mlflow_cmd, "-p", "18730", "-w", "1"], 18730, "/invocations", mlflow_body,
            env=path_env, note="`mlflow models serve --env-manager local -w 1`",
        ),
        Server(
            "mlflow w2",
            [*mlflow_cmd, "-p", "18740", "-w", "2"], 18740, "/invocations", mlflow_body,
            env=path_env, note="`-w 2`",
        ),
        Server(
            "kserve",
            [str(kserve / "bin" / "python"), str(HERE / "peers" / "kserve_onnx.py"),
             "--model_name", model_name(model_dir), "--model_path", str(model_dir / "model.onnx"),
             "--http_port", "18750", "--grpc_port", "18751"],
            18750, infer, v2_body, grpc_port=18751, model=name,
            note="kserve 0.15.2 ModelServer, custom ONNX Model class",
        ),
    ]  # fmt: skip


def versions(mlserver: Path, kserve: Path) -> dict[str, str]:
    """Installed versions of the peers (for the table's header)."""

    def ver(py: Path, mod: str) -> str:
        code = f"import importlib.metadata as m; print(m.version('{mod}'))"
        r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=False)
        return r.stdout.strip() or "?"

    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    h2_v = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
    return {
        "h2load": " ".join(h2_v.stdout.split()[:2]) or "h2load",
        "mlserver": ver(mlserver / "bin" / "python", "mlserver"),
        "kserve": ver(kserve / "bin" / "python", "kserve"),
        "mlflow": ver(MAIN_PY, "mlflow"),
        "onnxruntime": ver(MAIN_PY, "onnxruntime"),
        "wrk": " ".join((wrk_v.stdout + wrk_v.stderr).split()[:2]),
    }


def machine() -> str:
    """One line describing the machine."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} vCPU ({cpu}){mem}, {system}, Python {platform.python_version()}"


def render(results: dict, seconds: int, command: str) -> str:
    """The Markdown section."""
    cells = [(1, 1), (16, 1), (1, 100), (16, 100)]
    res = results["servers"]
    lines = [
        BEGIN,
        "## Serving",
        "",
        f"Command: `{command}` (written by `bench/serve/bench.py`; {results['date']}).",
        "",
        f"Machine: {results['machine']}. Load: {results['versions']['wrk']} (REST) and "
        f"{results['versions'].get('h2load', 'h2load')} (gRPC rows: V2 `ModelInfer`, typed FP32 "
        "contents, the server's REST row's process), one thread, "
        f"{seconds} s per cell after a warm-up; servers and load share the machine. "
        f"Every server runs the same ONNX file, {results['model']}, through "
        f"ONNX Runtime {results['versions']['onnxruntime']} with one intra-op thread. Cold start: "
        "process launch to the first successful inference, median of 3. Peers: MLServer "
        f"{results['versions']['mlserver']}, `mlflow models serve` "
        f"{results['versions']['mlflow']}, KServe ModelServer {results['versions']['kserve']}.",
        "",
        "| server | cold start s | c=1 1 row req/s | p50/p99 ms | c=16 1 row req/s | p50/p99 ms "
        "| c=1 100 rows req/s | p50/p99 ms | c=16 100 rows req/s | p50/p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} |" + " |" * 8)
            continue
        cold = r.get("cold_start_s")
        row = [f"{name}", "-" if cold is None else f"{cold:.2f}"]
        for conc, n in cells:
            c = r["cells"].get(f"c{conc}_n{n}")
            if c is None:
                row += ["-", "-"]
                continue
            flag = " (non-2xx!)" if c["non_2xx"] else ""
            row += [f"{c['rps']:,.0f}{flag}", f"{c['p50_ms']:.2f}/{c['p99_ms']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Notes per server:", ""]
    lines += [
        f"- **{name}**: {r.get('note', '')}; 1-min load average {r.get('load_before', 0):.1f} "
        f"before, {r.get('load_after', 0):.1f} after"
        for name, r in res.items()
    ]
    lines += ["", *results.get("verdict", []), END]
    return "\n".join(lines) + "\n"


def verdict(res: dict) -> list[str]:
    """The issue's targets, checked against this run."""

    def rps(name: str, cell: str = "c16_n1") -> float:
        r = res.get(name, {})
        return r.get("cells", {}).get(cell, {}).get("rps", float("nan"))

    a = rps("argosy")
    best_ms = max(rps("mlserver"), rps("mlserver pw0"))
    best_mlflow = max(rps("mlflow"), rps("mlflow w2"))
    ks, const = rps("kserve"), rps("argosy constant")
    cold = res.get("argosy", {}).get("cold_start_s", float("nan"))
    p99 = res.get("argosy", {}).get("cells", {}).get("c16_n1", {}).get("p99_ms", float("nan"))

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    def cpu(name: str) -> float:
        return res.get(name, {}).get("cells", {}).get("c16_n1", {}).get("cpu_us", float("nan"))

    shown = ("argosy", "argosy no-batching", "argosy constant", "mlserver pw0", "mlflow w2")
    cpu_line = ", ".join(f"{name} {cpu(name):.1f} us" for name in (*shown, "kserve"))
    no_batch = rps("argosy no-batching")
    grpc = {n: rps(f"{n} grpc") for n in ("argosy", "mlserver", "mlserver pw0", "kserve")}
    best_ms_grpc = max(grpc["mlserver"], grpc["mlserver pw0"])
    return [
        "Targets (single-row, c=16, this run):",
        "",
        f"- cold start {cold:.2f} s (target <= 0.5 s): {mark(cold <= 0.5)}",
        f"- vs MLServer's best: {a / best_ms:.1f}x (target >= 4x): {mark(a / best_ms >= 4)}",
        f"- vs `mlflow models serve`'s best: {a / best_mlflow:.1f}x (target >= 25x): "
        f"{mark(a / best_mlflow >= 25)}",
        f"- vs KServe ModelServer: {a / ks:.1f}x (target > 1x): {mark(a > ks)}",
        f"- p99 {p99:.2f} ms (target <= 10 ms): {mark(p99 <= 10)}",
        f"- share of the constant endpoint on the same stack: {a / const:.0%} (target >= 60%): "
        f"{mark(a / const >= 0.6)}",
        "",
        f"Adaptive batching: {a:,.0f} req/s on, {no_batch:,.0f} off ({a / no_batch:.2f}x). "
        f"gRPC, single row at c=16: Argosy {grpc['argosy']:,.0f} req/s, MLServer's best "
        f"{best_ms_grpc:,.0f}, KServe {grpc['kserve']:,.0f}.",
        "",
        "Server CPU a request, single row at c=16 (user plus system time of the server's "
        f"processes over the cell, divided by its requests; the load generator not included): "
        f"{cpu_line}. What Argosy adds to its HTTP stack: "
        f"{cpu('argosy') - cpu('argosy constant'):.1f} us a request; at 60% of the constant "
        f"endpoint's rate the whole request would have {cpu('argosy constant') / 0.6:.1f} us.",
    ]


def grpc_cells(h2load: str, s: Server, seconds: int, res: dict) -> None:
    """The gRPC cells of a server already running, recorded as "<name> grpc"."""
    print(f"== {s.name} grpc", flush=True)
    entry: dict = {"note": f"V2 gRPC of the {s.name} process", "cells": {}}
    entry["load_before"] = os.getloadavg()[0]
    res[f"{s.name} grpc"] = entry
    try:
        check_grpc(s.grpc_port or 0, s.model)
        run_h2load(h2load, s, 1, 16, 2)  # warm-up
        for n_rows in (1, 100):
            for conc in (1, 16):
                cell = run_h2load(h2load, s, n_rows, conc, seconds)
                entry["cells"][f"c{conc}_n{n_rows}"] = cell
                print(f"   c={conc} rows={n_rows}: {cell}", flush=True)
    except Exception as exc:  # a peer's gRPC failing must not lose the other rows
        entry["error"] = str(exc)[:200]
        print(f"   FAILED: {exc}", flush=True)
    entry["load_after"] = os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    """Install peers, run every cell, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per cell")
    parser.add_argument("--only", nargs="*", help="server names to run (default: all)")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model directory to serve (default: the pipeline's models/, else a stand-in)",
    )
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    wrk = ensure_wrk()
    h2load = ensure_h2load()
    mlserver = ensure_venv("mlserver", HERE / "requirements-mlserver.txt")
    kserve = ensure_venv("kserve", HERE / "requirements-kserve.txt")
    # The same conditions for every Python server: bytecode compiled (pip does it for the peers).
    sh([str(MAIN_PY), "-m", "compileall", "-q", "-j", "0", str(MAIN_PY.parents[1] / "lib"),
        str(REPO / "src")], stdout=subprocess.DEVNULL)  # fmt: skip
    model_dir = args.model_dir
    if model_dir is None:
        pipeline = REPO / "models"
        if (pipeline / "model.onnx").exists() and (pipeline / "metadata.json").exists():
            model_dir = pipeline
        else:
            model_dir = WORK / "model"
            make_model(model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    SPECS[:] = meta.get("feature_specs") or [{"name": f} for f in meta["features"]]
    shutil.rmtree(WORK / "mlflow_model", ignore_errors=True)  # rebuilt from this model
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": versions(mlserver, kserve),
        "seconds": args.seconds,
        "servers": {},
        "model": f"{model_dir.relative_to(REPO) if model_dir.is_relative_to(REPO) else model_dir}"
        f" ({len(SPECS)} features, sha256 {meta['sha256'][:12]})",
    }
    for s in servers(model_dir, mlserver, kserve):
        if args.only and s.name not in args.only:
            continue
        print(f"== {s.name}", flush=True)
        entry: dict = {"note": s.note, "cells": {}, "load_before": os.getloadavg()[0]}
        results["servers"][s.name] = entry
        try:
            colds = []
            for i in range(3):
                proc, cold = start(s)
                colds.append(cold)
                print(f"   cold start {cold:.3f} s", flush=True)
                if i < 2:
                    stop(proc)
                    time.sleep(1)
            entry["cold_start_s"] = statistics.median(colds)
            try:
                run_wrk(wrk, s, 1, 16, 2)  # warm-up
                for n_rows in (1, 100):
                    for conc in (1, 16):
                        cell = run_wrk(wrk, s, n_rows, conc, args.seconds, proc.pid)
                        entry["cells"][f"c{conc}_n{n_rows}"] = cell
                        print(f"   c={conc} rows={n_rows}: {cell}", flush=True)
                if s.grpc_port is not None:
                    grpc_cells(h2load, s, args.seconds, results["servers"])
            finally:
                stop(proc)
                entry["load_after"] = os.getloadavg()[0]
        except (RuntimeError, subprocess.CalledProcessError, AttributeError) as exc:
            entry["error"] = str(exc)[:200]
            print(f"   FAILED: {exc}", flush=True)
    results["verdict"] = verdict(results["servers"])
    (WORK / "serve-results.json").write_text(json.dumps(results, indent=2))
    command = "make bench-serve"
    section = render(results, args.seconds, command)
    doc = args.doc
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
