"""``carlink replay sweep --workers N / --ray-address``: the grid's replays run on Ray workers.

Each replay is the pure :func:`carlink.replay.sweep.run_one` of its :class:`RunSpec`, so a worker
runs it as the serial sweep does, and the results come back in the grid's order: the summary is
the same. A worker is one Ray actor for the whole sweep; the sweep's per-process caches (scenes,
traces, profiles, measured model results) then serve all the replays that worker runs.
"""

from __future__ import annotations

from typing import Callable, Iterable

from carlink.replay.distributed import RayTarget, run_units
from carlink.replay.sweep import RunResult, RunSpec, SweepWorker, run_one


def ray_map(target: RayTarget, progress_bar: bool = True) -> Callable[[Callable, Iterable[RunSpec]], list[RunResult]]:
    """An ordered map for :func:`carlink.replay.sweep.run_grid` that runs the replays on Ray."""

    def map_on_ray(fn: Callable[[RunSpec], RunResult], specs: Iterable[RunSpec]) -> list[RunResult]:
        if fn is not run_one:
            raise ValueError("the sweep's Ray map runs run_one only")
        return run_units(list(specs), SweepWorker, target, progress_bar=progress_bar, desc="sweep",
                         unit_name="replay")

    return map_on_ray


__all__ = ["ray_map"]
