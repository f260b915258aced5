"""tritonclient and kserve's clients, at their defaults, against the real server (REST and gRPC).

The server runs as a subprocess on 127.0.0.1 and each client in a fresh interpreter of its own
(``oip_clients.py``): the clients' protobuf modules cannot share a process. Every client must see
the server live and ready, list the model's inputs by name and datatype, and get the scores the
model computes itself, to the bit, for one row, a batch, and the same rows as named tensors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import (
    BOOLEAN,
    CATEGORICAL,
    FEATURES,
    ID_COLUMN,
    Subprocess,
    raw_value,
    spawn_server,
    valid_rows,
)

CLIENTS = ["triton-http", "triton-http-json", "triton-grpc", "kserve-rest", "kserve-grpc"]
SCRIPT = Path(__file__).with_name("oip_clients.py")


def _hex(values: np.ndarray) -> str:
    return np.asarray(values, dtype="<f4").tobytes().hex()


def _named(x: np.ndarray) -> list[list[Any]]:
    """The rows as one tensor per feature, raw values as a client holds them, plus row ids."""
    tensors: list[list[Any]] = []
    for j, name in enumerate(FEATURES):
        if name in CATEGORICAL:
            tensors.append([name, "BYTES", [raw_value(name, v) for v in x[:, j]]])
        elif name in BOOLEAN:
            tensors.append([name, "BOOL", [bool(v) for v in x[:, j]]])
        else:
            tensors.append([name, "FP32", [float(v) for v in x[:, j]]])
    tensors.append([ID_COLUMN, "BYTES", [f"row-é-{i}" for i in range(len(x))]])
    return tensors


@pytest.fixture(scope="module")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server (REST + gRPC, batching on), the rows, and what the model itself scores."""
    from argosy.serving.model import load_model

    tmp = tmp_path_factory.mktemp("clients")
    x = valid_rows(7, seed=11)
    np.save(tmp / "rows.npy", x)
    (tmp / "named.json").write_text(json.dumps(_named(x)))
    model = load_model(model_dir)
    srv: Subprocess = spawn_server(model_dir, tmp)
    try:
        yield {"srv": srv, "tmp": tmp, "x": x, "model": model}
    finally:
        if srv.proc.poll() is None:
            srv.terminate()


@pytest.mark.parametrize("client", CLIENTS)
def test_client_at_its_defaults_gets_the_models_own_scores(
    served: dict[str, Any], client: str
) -> None:
    # Given a server and one third-party client in a process of its own
    srv, tmp, x, model = served["srv"], served["tmp"], served["x"], served["model"]
    # When the client checks health and metadata and infers one row, a batch, and named tensors
    result = subprocess.run(
        [sys.executable, str(SCRIPT), client, str(srv.port), str(srv.grpc_port),
         str(tmp / "rows.npy"), str(tmp / "named.json")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # Then the server is live and ready and the model ready, as the client reads them
    assert out["live"] is True
    assert out["ready"] is True
    assert out["model_ready"] is True
    # and the numbers are the model's, bit for bit, with the threshold's decisions
    expected = model.predict(x)
    assert out["one"] == _hex(expected[:1])
    assert out["batch"] == _hex(expected)
    assert out["batch_decision"] == (expected >= 0.5).astype(int).tolist()
    if "named" in out:  # BYTES categories (length-prefixed in binary), BOOL, FP32, row ids
        assert out["named"] == _hex(expected)
    if "inputs" in out:  # metadata lists every feature by name and the datatype to send
        assert out["inputs"][: len(FEATURES)] == [
            [f, "BYTES" if f in CATEGORICAL else "BOOL" if f in BOOLEAN else "FP32"]
            for f in FEATURES
        ]
        assert out["inputs"][-1] == [ID_COLUMN, "BYTES"]
        assert out["extensions"] == ["binary_tensor_data"]
