"""Regenerate the Python code for carlink/proto/inference.proto: ``python -m carlink.proto.generate``.

Needs grpcio-tools (a dev dependency); see carlink/protogen.py for how protos are compiled.
"""

from __future__ import annotations

import sys
from pathlib import Path

from carlink.protogen import ProtoSet

PROTOS = ProtoSet(Path(__file__).resolve().parent, "carlink/proto", ("inference.proto",), grpc=True)

if __name__ == "__main__":
    sys.exit(PROTOS.main())
