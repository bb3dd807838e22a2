"""argparse ``type=`` callables for the numbers every carlink command takes.

Each parses one kind of number and checks its range, so ``--rtt abc`` or ``--max-frames 0``
stop with ``argument --max-frames: expected an integer >= 1, got 0`` before any work starts.
Floats must be finite: ``nan`` and ``inf`` are refused everywhere.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, TypeVar

N = TypeVar("N", int, float)


def _number(text: str, convert: Callable[[str], N], in_range: Callable[[N], bool], expected: str) -> N:
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value) or not in_range(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: frames, workers, bytes of a queue)."""
    return _number(text, int, lambda v: v >= 1, "an integer >= 1")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (e.g. a port, where 0 picks a free one)."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite number > 0 (deadlines, scale factors, sizes)."""
    return _number(text, float, lambda v: v > 0, "a finite number > 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (bandwidth, round-trip time, offsets, waits)."""
    return _number(text, float, lambda v: v >= 0, "a finite number >= 0")


def fraction(text: str) -> float:
    """A finite number in [0, 1] (headroom, quantiles)."""
    return _number(text, float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
