"""Runtimes for other hardware: a CSV table the profiler takes instead of its own timings.

Two layouts are read (a header row is required; lines starting with ``#`` are comments):

* the profiler's own, per model and resize::

      model,resize,runtime_ms_p50,runtime_ms_p99
      hog-default,native,812.0,901.5
      hog-default-fast,*,25,31

* what ``carlink models bench`` writes, per model, batch size, backend and device, with the
  hardware it ran on (``resize`` is ``*``)::

      model,resize,runtime_ms_p50,runtime_ms_p99,batch,backend,device,hardware
      yolo-fastest-1.1-320x320,*,9.1,12.0,1,torch,cpu,Intel Xeon (2 cores)

  Only ``batch`` 1 rows are used (the profile's runtime is one frame's); further columns are
  ignored. Where batch-1 rows of one model come from several backends or devices, ``backend``
  picks one.

``resize`` is an option's resize label (``native``, ``input``, ``x0.5``, ``960x640``) or ``*``
for any; the on-car model is looked up with ``native``. An exact row wins over ``*``.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from carlink.replay.profiling.errors import ProfilerError

BASIC_HEADER = ["model", "resize", "runtime_ms_p50", "runtime_ms_p99"]
BENCH_HEADER = [*BASIC_HEADER, "batch", "backend", "device", "hardware"]


@dataclass(frozen=True)
class RuntimeRow:
    p50: float
    p99: float
    hardware: str | None = None  # None in the 4-column layout


@dataclass(frozen=True)
class RuntimeTable:
    rows: dict[tuple[str, str], RuntimeRow]
    source: str
    sha256: str

    @classmethod
    def load(cls, path: str | Path, backend: str | None = None) -> "RuntimeTable":
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProfilerError(f"cannot read runtime table {path}: {exc.strerror or exc}") from None
        lines = [ln for ln in data.decode("utf-8", errors="replace").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        reader = csv.DictReader(lines)
        header = [f.strip() for f in reader.fieldnames or []]
        bench = header[:len(BENCH_HEADER)] == BENCH_HEADER
        if header != BASIC_HEADER and not bench:
            raise ProfilerError(f"{path}: the header must be {','.join(BASIC_HEADER)} or start with "
                                f"{','.join(BENCH_HEADER)} (as `carlink models bench` writes), got {reader.fieldnames}")
        reader.fieldnames = header
        rows: dict[tuple[str, str], RuntimeRow] = {}
        for i, row in enumerate(reader, start=2):
            if bench and not _wanted(row, path, i, backend):
                continue
            key = (row["model"].strip(), row["resize"].strip().lower())
            p50, p99 = _runtimes(row, path, i)
            if key in rows:
                hint = "" if not bench or backend else " (several backends or devices: pick one with --runtime-backend)"
                raise ProfilerError(f"{path} row {i}: model {key[0]} resize {key[1]} is listed twice{hint}")
            rows[key] = RuntimeRow(p50, p99, (row.get("hardware") or "").strip() or None if bench else None)
        if not rows:
            raise ProfilerError(f"{path}: no usable row" + (" (batch 1" + (f", backend {backend}" if backend else "")
                                                            + ")" if bench else ""))
        return cls(rows, str(path), hashlib.sha256(data).hexdigest())

    def lookup(self, model: str, resize: str) -> RuntimeRow:
        for key in ((model, resize), (model, "*")):
            if key in self.rows:
                return self.rows[key]
        raise ProfilerError(f"runtime table {self.source} has no row for model {model} at resize {resize} "
                            f"(nor a '*' row for that model)")

    def hardware(self) -> list[str]:
        """The hardware the table's rows were measured on, as its rows name it."""
        return sorted({r.hardware for r in self.rows.values() if r.hardware})


def _wanted(row: dict[str, str], path: Path, i: int, backend: str | None) -> bool:
    try:
        batch = int(row["batch"])
    except (TypeError, ValueError):
        raise ProfilerError(f"{path} row {i}: batch must be a whole number, got {row['batch']!r}") from None
    return batch == 1 and (backend is None or (row["backend"] or "").strip() == backend)


def _runtimes(row: dict[str, str], path: Path, i: int) -> tuple[float, float]:
    try:
        p50, p99 = float(row["runtime_ms_p50"]), float(row["runtime_ms_p99"])
    except (TypeError, ValueError):
        raise ProfilerError(f"{path} row {i}: runtimes must be numbers, got {row}") from None
    if not (math.isfinite(p50) and math.isfinite(p99) and 0 <= p50 <= p99):
        raise ProfilerError(f"{path} row {i}: need 0 <= runtime_ms_p50 <= runtime_ms_p99, got {p50}, {p99}")
    return p50, p99


def this_hardware() -> str:
    """This machine's CPU as /proc/cpuinfo names it, with the core count (where runtimes are measured)."""
    name = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name}, {os.cpu_count()} CPUs"
