"""Regenerate the protobuf modules of carlink.datasets: ``python -m carlink.datasets.generate_protos``.

Needs grpcio-tools (a dev dependency); see carlink/protogen.py for how protos are compiled.
"""

from __future__ import annotations

import sys
from pathlib import Path

from carlink.protogen import ProtoSet

PROTOS = ProtoSet(Path(__file__).resolve().parent, "carlink/datasets",
                  ("waymo_frame.proto", "tf_example.proto"))

if __name__ == "__main__":
    sys.exit(PROTOS.main())
