"""Third-party Open Inference Protocol clients against a running server, one client per process.

tritonclient and kserve each register the ``inference.*`` protobuf messages under their own file
name (and so do Argosy's generated stubs), so no two of them can be imported in one process:
``test_protocol_clients.py`` runs this script once per client, in a fresh interpreter, and reads
the JSON it prints. Scores are printed as the hex of their little-endian FP32 bytes, so the test
compares them bit for bit.

Usage: ``python oip_clients.py CLIENT HTTP_PORT GRPC_PORT ROWS.npy NAMED.json`` with CLIENT one of
``triton-http``, ``triton-http-json``, ``triton-grpc``, ``kserve-rest``, ``kserve-grpc``;
NAMED.json holds the same rows as one tensor per feature (``[name, datatype, values]``, raw
category strings as BYTES, booleans as BOOL), which the tritonclient modes also send.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np

MODEL = "example-model"


def _hex(values: Any) -> str:
    return np.asarray(values, dtype="<f4").tobytes().hex()


_NUMPY = {"BYTES": np.object_, "BOOL": np.bool_, "FP32": np.float32}


def _named(module: Any, named: list[list[Any]], binary: bool | None) -> list[Any]:
    """One client tensor per feature (BYTES as Python strings, which the client encodes)."""
    tensors = []
    for name, datatype, values in named:
        data = np.array(values, dtype=_NUMPY[datatype])
        tensor = module.InferInput(name, [len(values)], datatype)
        if binary is None:
            tensor.set_data_from_numpy(data)
        else:
            tensor.set_data_from_numpy(data, binary_data=binary)
        tensors.append(tensor)
    return tensors


def triton_http(
    port: int, rows: np.ndarray, named: list[list[Any]], binary: bool
) -> dict[str, Any]:
    """The tritonclient HTTP client: binary tensors both ways unless ``binary`` is False."""
    import tritonclient.http as http

    client = http.InferenceServerClient(url=f"127.0.0.1:{port}")
    meta = client.get_model_metadata(MODEL)
    out: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(MODEL),
        "extensions": client.get_server_metadata()["extensions"],
        "inputs": [[t["name"], t["datatype"]] for t in meta["inputs"]],
    }
    for key, x in (("one", rows[:1]), ("batch", rows)):
        tensor = http.InferInput("features", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = None
        if not binary:
            outputs = [
                http.InferRequestedOutput("probability", binary_data=False),
                http.InferRequestedOutput("decision", binary_data=False),
            ]
        result = client.infer(MODEL, [tensor], outputs=outputs)
        out[key] = _hex(result.as_numpy("probability"))
        out[f"{key}_decision"] = result.as_numpy("decision").tolist()
    result = client.infer(MODEL, _named(http, named, binary), outputs=outputs)
    out["named"] = _hex(result.as_numpy("probability"))
    return out


def triton_grpc(port: int, rows: np.ndarray, named: list[list[Any]]) -> dict[str, Any]:
    """The tritonclient gRPC client (raw_input_contents, raw outputs)."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url=f"127.0.0.1:{port}")
    meta = client.get_model_metadata(MODEL, as_json=True)
    out: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(MODEL),
        "extensions": list(client.get_server_metadata(as_json=True)["extensions"]),
        "inputs": [[t["name"], t["datatype"]] for t in meta["inputs"]],
    }
    for key, x in (("one", rows[:1]), ("batch", rows)):
        tensor = grpc.InferInput("features", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(MODEL, [tensor])
        out[key] = _hex(result.as_numpy("probability"))
        out[f"{key}_decision"] = result.as_numpy("decision").tolist()
    result = client.infer(MODEL, _named(grpc, named, None))
    out["named"] = _hex(result.as_numpy("probability"))
    return out


async def kserve_rest(port: int, rows: np.ndarray) -> dict[str, Any]:
    """The kserve InferenceRESTClient (V2), binary tensor data at its default."""
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    base = f"http://127.0.0.1:{port}"
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=10))
    out: dict[str, Any] = {
        "live": await client.is_server_live(base),
        "ready": await client.is_server_ready(base),
        "model_ready": await client.is_model_ready(base, MODEL),
    }
    for key, x in (("one", rows[:1]), ("batch", rows)):
        tensor = InferInput("features", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = await client.infer(base, InferRequest(MODEL, [tensor]), model_name=MODEL)
        by_name = {o.name: o for o in result.outputs}
        out[key] = _hex(by_name["probability"].as_numpy())
        out[f"{key}_decision"] = by_name["decision"].as_numpy().tolist()
    await client.close()
    return out


async def kserve_grpc(port: int, rows: np.ndarray) -> dict[str, Any]:
    """The kserve InferenceGRPCClient."""
    from kserve import InferInput, InferRequest
    from kserve.inference_client import InferenceGRPCClient

    client = InferenceGRPCClient(f"127.0.0.1:{port}", retries=2, timeout=10)
    out: dict[str, Any] = {
        "live": await client.is_server_live(),
        "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready(MODEL),
    }
    for key, x in (("one", rows[:1]), ("batch", rows)):
        tensor = InferInput("features", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = await client.infer(InferRequest(MODEL, [tensor]))
        by_name = {o.name: o for o in result.outputs}
        out[key] = _hex(by_name["probability"].as_numpy())
        out[f"{key}_decision"] = by_name["decision"].as_numpy().tolist()
    await client.close()
    return out


def main(argv: list[str]) -> int:
    """Run one client and print its findings as JSON."""
    which, http_port, grpc_port, rows_path, named_path = argv
    rows = np.load(rows_path)
    with open(named_path) as fh:
        named = json.load(fh)
    if which == "triton-http":
        out = triton_http(int(http_port), rows, named, binary=True)
    elif which == "triton-http-json":
        out = triton_http(int(http_port), rows, named, binary=False)
    elif which == "triton-grpc":
        out = triton_grpc(int(grpc_port), rows, named)
    elif which == "kserve-rest":
        out = asyncio.run(kserve_rest(int(http_port), rows))
    elif which == "kserve-grpc":
        out = asyncio.run(kserve_grpc(int(grpc_port), rows))
    else:
        raise SystemExit(f"unknown client {which!r}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
