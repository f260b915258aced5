"""The generated gRPC modules are exactly what `make grpc-stubs` makes from the vendored .proto."""

from __future__ import annotations

import hashlib
from pathlib import Path

from argosy.serving.proto import generate

PROVENANCE = generate.HERE / "PROVENANCE.md"


def test_committed_stubs_equal_a_fresh_generation(tmp_path: Path) -> None:
    # When the modules are generated anew from the vendored .proto
    written = generate.generate(tmp_path)
    # Then each equals the committed one, byte for byte
    assert [p.name for p in written] == list(generate.MODULES)
    for path in written:
        committed = generate.HERE / path.name
        assert path.read_text() == committed.read_text(), (
            f"{committed} is stale: run `make grpc-stubs`"
        )


def test_vendored_proto_is_the_one_its_provenance_records() -> None:
    digest = hashlib.sha256(generate.PROTO.read_bytes()).hexdigest()
    text = PROVENANCE.read_text()
    assert digest in text
    assert "kserve/kserve" in text
    # and it is the V2 service every Open Inference Protocol client calls
    proto = generate.PROTO.read_text()
    assert "package inference;" in proto
    assert "service GRPCInferenceService" in proto
