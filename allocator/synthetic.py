"""Random but plausible allocation problems, for property tests and the benchmark.

Each task gets ``n_options`` cloud options shaped like a real profile: a grid of cloud models
(bigger: slower, more accurate) x resize scales x JPEG qualities, with payload growing with the
pixel count and quality and utility growing (with noise) with model, scale and quality. The
numbers are made up: they are a workload for solvers, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carlink.tasks import Option, Task

_CAMERAS = ("FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT")
_MODELS = (("det-s", 0.55, 12.0), ("det-m", 0.65, 25.0), ("det-l", 0.74, 45.0))  # name, AP, ms
_SCALES = (1.0, 0.75, 0.5, 0.375, 0.25)
_QUALITIES = ((95, 1.0), (75, 0.5), (50, 0.33))  # JPEG quality, payload factor
_FULL_FRAME_BYTES = 450_000.0  # a 1920x1280 JPEG at q95, about what the real Waymo frame holds


@dataclass(frozen=True)
class Conditions:
    """Link conditions for one synthetic frame."""

    bandwidth_bps: float
    rtt_ms: float


def random_tasks(rng: np.random.Generator, n_tasks: int, n_options: int) -> list[Task]:
    """``n_tasks`` tasks with ``n_options`` cloud options each plus the on-car option."""
    grid = [(m, s, q) for s in _SCALES for q in _QUALITIES for m in _MODELS]
    tasks = []
    for t in range(n_tasks):
        camera = _CAMERAS[t % len(_CAMERAS)]
        frame_bytes = _FULL_FRAME_BYTES * rng.uniform(0.5, 1.2)
        on_car_u = rng.uniform(0.25, 0.45)
        options = [Option(id="on-car", utility=round(on_car_u, 6), on_car=True, model="on-car")]
        for k in range(n_options):
            (model, ap, runtime), scale, (quality, qf) = grid[k % len(grid)]
            payload = frame_bytes * scale * scale * qf * rng.lognormal(0.0, 0.1)
            detail = (1.0 - np.exp(-4.0 * scale)) * (0.85 + 0.15 * qf)
            utility = float(np.clip(ap * detail + rng.normal(0.0, 0.02), 0.0, 1.0))
            options.append(
                Option(
                    id=f"{model}-s{scale:g}-q{quality}-{k}",
                    utility=round(utility, 6),
                    payload_bytes=float(round(payload)),
                    runtime_ms=round(runtime * rng.uniform(0.8, 1.3), 3),
                    model=model,
                    resize=(int(1920 * scale), int(1280 * scale)),
                    codec="jpeg",
                    jpeg_quality=quality,
                )
            )
        tasks.append(
            Task(
                name=f"{camera}-{t}" if n_tasks > len(_CAMERAS) else camera,
                deadline_ms=float(rng.choice([100.0, 150.0, 200.0])),
                options=tuple(options),
                weight=float(rng.choice([1.0, 1.0, 1.5, 2.0])),
                camera=camera,
            )
        )
    return tasks


def random_conditions(rng: np.random.Generator, n_tasks: int) -> Conditions:
    """A bandwidth between very scarce and plenty for ``n_tasks`` cameras, and an RTT."""
    per_task = rng.uniform(0.2e6, 20e6)
    return Conditions(bandwidth_bps=per_task * n_tasks, rtt_ms=float(rng.uniform(10.0, 60.0)))
