"""Regenerate the protobuf modules of carlink.datasets from its .proto files.

Run from anywhere: ``python -m carlink.datasets.generate_protos`` (or this file directly).
The generated *_pb2.py / *_pb2.pyi files are committed, so nothing is generated at install or run
time; tests/test_datasets_protos.py regenerates into a temporary folder and compares bytes, so a
.proto edited without regenerating fails the tests.

The .proto files are compiled under the virtual path ``carlink/datasets/`` (protoc's
``-I VIRTUAL=REAL`` form): descriptors are registered as ``carlink/datasets/<name>.proto`` (unique
in the process-wide descriptor pool) and any cross-file import would be generated as
``from carlink.datasets import ...``, which is how the package is installed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_FILES = ("waymo_frame.proto", "tf_example.proto")
VIRTUAL_DIR = "carlink/datasets"


def generated_names(proto_file: str) -> tuple[str, str]:
    stem = Path(proto_file).stem
    return f"{stem}_pb2.py", f"{stem}_pb2.pyi"


def generate(out_dir: Path, proto_dir: Path = HERE) -> list[Path]:
    """Compile every .proto of ``proto_dir`` into ``out_dir``; return the files written."""
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{VIRTUAL_DIR}={proto_dir}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            *(f"{VIRTUAL_DIR}/{name}" for name in PROTO_FILES),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {', '.join(PROTO_FILES)} in {proto_dir}")
        written = []
        for name in PROTO_FILES:
            for gen in generated_names(name):
                target = out_dir / gen
                shutil.copyfile(Path(tmp) / VIRTUAL_DIR / gen, target)
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE,
                        help="folder to write the generated modules to (default: next to the .proto files)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
