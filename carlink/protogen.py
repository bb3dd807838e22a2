"""Compile the project's .proto files into the committed Python modules (grpcio-tools).

Each proto set is compiled under a virtual path that matches where its package is installed
(protoc's ``-I VIRTUAL=REAL`` form), so descriptors register as e.g.
``carlink/datasets/waymo_frame.proto`` (unique in the process-wide pool) and generated imports read
``from carlink.proto import ...`` in an editable install and a wheel alike. The generated files are
committed: nothing is generated at install or run time, and tests regenerate into a temporary
folder and compare bytes, so an edited .proto without regenerated code fails them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProtoSet:
    """Some .proto files in one folder, installed as the package ``virtual_dir``."""

    proto_dir: Path
    virtual_dir: str  # e.g. "carlink/datasets"
    files: tuple[str, ...]
    grpc: bool = False  # also generate *_pb2_grpc.py service stubs

    def generated_names(self) -> list[str]:
        suffixes = ("_pb2.py", "_pb2.pyi") + (("_pb2_grpc.py",) if self.grpc else ())
        return [Path(f).stem + s for f in self.files for s in suffixes]

    def generate(self, out_dir: Path) -> list[Path]:
        """Compile into ``out_dir``; return the files written, in ``generated_names`` order."""
        from grpc_tools import protoc  # dev dependency: only regeneration needs it

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            outputs = [f"--python_out={tmp}", f"--pyi_out={tmp}"]
            if self.grpc:
                outputs.append(f"--grpc_python_out={tmp}")
            args = ["grpc_tools.protoc", f"-I{self.virtual_dir}={self.proto_dir}", *outputs,
                    *(f"{self.virtual_dir}/{name}" for name in self.files)]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {', '.join(self.files)} in {self.proto_dir}")
            written = []
            for name in self.generated_names():
                target = out_dir / name
                shutil.copyfile(Path(tmp) / self.virtual_dir / name, target)
                written.append(target)
        return written

    def stale(self, scratch: Path) -> list[str]:
        """Names of committed modules that differ from a fresh compile (empty: up to date)."""
        fresh = self.generate(scratch)
        return [p.name for p in fresh
                if not (self.proto_dir / p.name).exists()
                or (self.proto_dir / p.name).read_bytes() != p.read_bytes()]

    def main(self, argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(
            description=f"Regenerate the Python modules of {', '.join(self.files)}.")
        parser.add_argument("--out", type=Path, default=self.proto_dir,
                            help="folder to write the generated modules to (default: beside the .proto files)")
        args = parser.parse_args(argv)
        for path in self.generate(args.out):
            print(path)
        return 0


if __name__ == "__main__":  # pragma: no cover - use the per-package generate modules
    sys.exit("run python -m carlink.proto.generate or python -m carlink.datasets.generate_protos")
