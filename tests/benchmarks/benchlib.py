"""Helpers shared by the benchmark scripts (run as ``python tests/benchmarks/<subject>.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def data_root() -> Path:
    """The real data folder: $CARLINK_TEST_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("CARLINK_TEST_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    if not root.is_dir():
        sys.exit(f"test data not found at {root}: set CARLINK_TEST_DATA")
    return root
