"""`carlink models bench`: a runtime table per model variant and batch size, on random input.

Needs no data, so it runs on any machine (a cloud GPU, the car's computer). Each row times whole
detect_batch calls (pre-processing, network, decoding, NMS) and reports p50/p99 per image. The
CSV is the profiler's runtime table: model,resize,runtime_ms_p50,runtime_ms_p99,batch,backend,device,hardware.
"""

from __future__ import annotations

import csv
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

CSV_HEADER = ("model", "resize", "runtime_ms_p50", "runtime_ms_p99", "batch", "backend", "device", "hardware")


@dataclass(frozen=True)
class BenchRow:
    model: str
    batch: int
    backend: str
    device: str
    hardware: str
    p50_ms: float  # per image
    p99_ms: float
    iterations: int


def cpu_name() -> str:
    """The CPU's model name as the kernel reports it (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware_name(device: str, threads: int | None) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    suffix = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return f"{cpu_name()}{suffix}"


def set_threads(threads: int | None, backend: str) -> None:
    """One thread count for both libraries, so that backends are compared on equal terms."""
    if threads is None:
        return
    import cv2

    cv2.setNumThreads(threads)
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)


def percentile_ms(per_image_s: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(per_image_s) * 1e3, q))


def bench_detector(detector, batch: int, iterations: int, warmup: int = 2, seed: int = 0) -> tuple[float, float]:
    """(p50, p99) milliseconds per image over `iterations` detect_batch calls on random images."""
    size = detector.spec.input_size or (640, 480)
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(batch)]
    sync = _synchronizer(detector.device)
    for _ in range(warmup):
        detector.detect_batch(images)
    sync()
    per_image = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        detector.detect_batch(images)  # results come back to the CPU: the call is complete
        sync()
        per_image.append((time.perf_counter() - t0) / batch)
    return percentile_ms(per_image, 50), percentile_ms(per_image, 99)


def _synchronizer(device: str) -> Callable[[], None]:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def run_bench(names: Sequence[str], *, backend: str = "auto", batches: Sequence[int] = (1,), device: str = "auto",
              threads: int | None = None, iterations: int = 20, models_dir: str | None = None,
              report: Callable[[BenchRow], None] | None = None) -> list[BenchRow]:
    from carlink.zoo.registry import get_model

    rows = []
    for name in names:
        detector = get_model(name, backend=backend, device=device, models_dir=models_dir)
        used = getattr(detector, "backend", "") or backend
        set_threads(threads, used)
        hardware = hardware_name(detector.device, threads)
        for batch in batches:
            p50, p99 = bench_detector(detector, batch, iterations)
            row = BenchRow(name, batch, used, detector.device, hardware, p50, p99, iterations)
            rows.append(row)
            if report:
                report(row)
    return rows


def write_csv(rows: Sequence[BenchRow], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        for r in rows:
            w.writerow([r.model, "*", f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}", r.batch, r.backend, r.device, r.hardware])
