"""Regenerate the Python code for carlink/proto/inference.proto.

Run from anywhere: ``python -m carlink.proto.generate`` (needs grpcio-tools, a dev dependency).
The proto is compiled with the repository root as include path, so the generated modules import
each other as ``carlink.proto.inference_pb2``. tests/test_proto_generated.py regenerates into a
temporary folder and compares bytes with the checked-in files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
ROOT = PROTO_DIR.parent.parent  # the folder that holds carlink/
PROTOS = ("carlink/proto/inference.proto",)
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Compile the protos into ``out_root/carlink/proto/``; return the files written."""
    from grpc_tools import protoc  # imported here: only generation needs grpcio-tools

    out_root = Path(out_root)
    (out_root / "carlink" / "proto").mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *PROTOS,
    ]
    # protoc resolves the relative proto paths against the include path given above.
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} for {', '.join(PROTOS)}")
    return [out_root / "carlink" / "proto" / name for name in GENERATED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT,
        help="root to write carlink/proto/*_pb2*.py under (default: the repository root)",
    )
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
