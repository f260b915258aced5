"""Fuzz the server with thousands of random and mutated bodies: never a 5xx, healthy after."""

from __future__ import annotations

import json
import random
import socket
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (
    HYPHENATED,
    ID_COLUMN,
    Client,
    InProcess,
    id_tensor,
    infer_body,
    named_body,
    valid_rows,
)

INFER = "/v2/models/example-model/infer"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=12,
)
names = st.sampled_from(
    ["features", ID_COLUMN, "f00", "f01", "f02", "f03", "f08", "f10", HYPHENATED, "nope", ""]
)
datatypes = st.sampled_from(["FP32", "FP64", "INT64", "INT8", "UINT8", "BYTES", "BOOL", "x", None])
shapes = st.lists(st.integers(min_value=-2, max_value=200), max_size=3) | json_values
tensors = st.fixed_dictionaries(
    {"name": names, "datatype": datatypes, "shape": shapes, "data": json_values}
)
structured = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=4)},
    optional={"id": json_values, "outputs": json_values, "parameters": json_values},
)


def mutate(body: bytes, rnd: random.Random) -> bytes:
    """Flip, delete, duplicate or insert bytes of a valid body."""
    b = bytearray(body)
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(4)
        i = rnd.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and b:
            del b[i : i + rnd.randint(1, 16)]
        elif op == 2:
            b[i:i] = b[i : i + rnd.randint(1, 32)]
        else:
            b[i:i] = rnd.choice(
                [b"NaN", b"-Infinity", b"null", b"1e999", b"[", b"}", b'"', b"\xff"]
            )
    return bytes(b)


def post(client: Client, raw: bytes) -> int:
    status, _, _ = client.request("POST", INFER, raw=raw)
    return status


def valid_body(rnd: random.Random) -> dict[str, Any]:
    n = rnd.randint(1, 5)
    body = infer_body(valid_rows(n, seed=rnd.randrange(1000)))
    if rnd.random() < 0.5:
        body["inputs"].append(id_tensor(["t"] * n))
    return body


def assert_healthy(client: Client) -> None:
    assert client.request("GET", "/v2/health/live")[0] == 200
    assert client.request("GET", "/v2/health/ready")[0] == 200
    assert post(client, json.dumps(infer_body(valid_rows(3))).encode()) == 200


def test_structured_random_bodies_never_5xx(server: InProcess) -> None:
    client = server.client()
    seen: dict[int, int] = {}

    @settings(
        max_examples=1000,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=structured)
    def check(body: dict[str, Any]) -> None:
        status = post(client, json.dumps(body).encode())
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, body

    check()
    assert sum(seen.values()) >= 1000
    assert_healthy(client)


def test_mutated_valid_bodies_never_5xx(server: InProcess) -> None:
    # Given valid bodies (single tensor and per-feature) with random byte-level mutations
    rnd = random.Random(20240501)
    client = server.client()
    statuses: dict[int, int] = {}
    for i in range(2500):
        body = valid_body(rnd)
        if i % 3 == 0:  # per-feature form: raw strings and booleans, or FP32 codes
            body = named_body(valid_rows(2, seed=i), raw=i % 2 == 0)
        # When mutated and posted
        status = post(client, mutate(json.dumps(body).encode(), rnd))
        statuses[status] = statuses.get(status, 0) + 1
        # Then the server never answers 5xx
        assert status < 500, status
    # And both accepted and rejected bodies occurred (the fuzzer exercised both paths)
    assert statuses.get(200, 0) > 0
    assert sum(v for k, v in statuses.items() if 400 <= k < 500) > 1000
    assert_healthy(client)


def test_random_bytes_on_the_socket_never_5xx(server: InProcess) -> None:
    rnd = random.Random(7)
    prefixes = [b"", b"POST /v2/models/example-model/infer HTTP/1.1\r\n", b"GET /v2 HTTP/1.1\r\n"]
    for _ in range(300):
        payload = rnd.choice(prefixes) + rnd.randbytes(rnd.randint(0, 400))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        if reply:
            status = int(reply.split(b" ", 2)[1])
            assert status < 500, reply[:200]
    client = server.client()
    assert_healthy(client)
