"""Generate the Python protobuf and gRPC modules from the vendored V2 ``.proto``.

Run ``make grpc-stubs`` (``python -m argosy.serving.proto.generate``); a test regenerates them
into a temporary directory and compares. ``grpcio-tools`` is a development dependency, so it is
imported only here, never by the server. The modules are written as ``protoc`` emits them,
behind a header that keeps ruff's linter and formatter off generated code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2]  # the directory holding the argosy package: imports are package-absolute
PROTO = HERE / "grpc_predict_v2.proto"
MODULES = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2_grpc.py")
HEADER = (
    "# ruff: noqa\n# fmt: off\n"
    "# Written by `make grpc-stubs` from grpc_predict_v2.proto: do not edit.\n"
)


def generate(out: Path) -> list[Path]:
    """Write the generated modules into ``out`` (which mirrors ``src/``).

    Args:
        out: Root to write under; ``SRC`` rewrites the committed modules.

    Returns:
        The written files.

    Raises:
        RuntimeError: protoc failed.
    """
    from grpc_tools import protoc

    proto = PROTO.relative_to(SRC).as_posix()
    code = protoc.main(
        ["protoc", f"-I{SRC}", f"--python_out={out}", f"--grpc_python_out={out}", proto]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with status {code} on {PROTO}")
    written = []
    for name in MODULES:
        path = out / HERE.relative_to(SRC) / name
        path.write_text(HEADER + path.read_text())
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Regenerate the committed modules (or into ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SRC, help="root to write under")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
