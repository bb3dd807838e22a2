"""Helpers shared by the benchmark scripts (run as ``python tests/benchmarks/<subject>.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def default_data_dir() -> Path:
    """$CARLINK_TEST_DATA, else ../shared/data beside the repository (not checked: a default
    for a --data option)."""
    env = os.environ.get("CARLINK_TEST_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def data_root() -> Path:
    """The real data folder (:func:`default_data_dir`); exits with a message where it is missing."""
    root = default_data_dir()
    if not root.is_dir():
        sys.exit(f"test data not found at {root}: set CARLINK_TEST_DATA")
    return root
