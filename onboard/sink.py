"""Where fused results go: one JSON object per frame, one line each, to a file or stdout.

A line holds the frame id, its capture time, the link estimate and allocation summary used for
it, and per task: source ("cloud" or "on-car"), the option whose result it is, the option the
allocator chose, latency from capture, whether the deadline was met, what became of the cloud
request, and the detections (box centre/size in original-image pixels, score, class).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from carlink.detection import Detection
from carlink.onboard.fuser import FrameResult


def detection_to_json(d: Detection) -> dict[str, Any]:
    b = d.box
    return {
        "box": [round(b.center_x, 2), round(b.center_y, 2), round(b.length, 2), round(b.width, 2)],
        "score": round(float(d.score), 4),
        "class": d.cls.label,
    }


def frame_to_json(fr: FrameResult, include_detections: bool = True) -> dict[str, Any]:
    tasks = {}
    for name, r in fr.tasks.items():
        t: dict[str, Any] = {
            "source": r.source,
            "option": r.option,
            "planned_option": r.planned_option,
            "latency_ms": round(r.latency_s * 1000.0, 3),
            "deadline_met": r.deadline_met,
            "cloud_status": r.cloud_status,
            "num_detections": len(r.detections),
        }
        if include_detections:
            t["detections"] = [detection_to_json(d) for d in r.detections]
        tasks[name] = t
    return {"frame_id": fr.frame_id, "capture_time": round(fr.capture_time, 6), **fr.info, "tasks": tasks}


class SinkError(OSError):
    """A result could not be written (message names the sink and the OS's reason)."""


class JsonLinesSink:
    """Writes each FrameResult as one JSON line, straight to the file descriptor (no buffer of
    ours: a line is on its way when write returns, and a disk that is full loses that line, not
    a growing buffer). A failed write raises SinkError and is counted in ``lost``."""

    def __init__(self, path: str | Path = "-", include_detections: bool = True) -> None:
        self.path = str(path)
        self._own = self.path != "-"
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644) \
            if self._own else None
        self._include = include_detections
        self._lock = threading.Lock()
        self.written = 0
        self.lost = 0  # results that could not be written
        self.last_error: str | None = None
        self.close_error: str | None = None

    def write(self, fr: FrameResult) -> None:
        line = json.dumps(frame_to_json(fr, self._include), allow_nan=False, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._write(line)
            except OSError as exc:
                self.lost += 1
                self.last_error = exc.strerror or str(exc)
                raise SinkError(f"sink {self.path}: cannot write: {self.last_error}") from None
            self.written += 1

    def _write(self, line: str) -> None:
        if self._fd is None:
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        data = memoryview(line.encode("utf-8"))
        while data:
            data = data[os.write(self._fd, data):]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.close(fd)
                except OSError as exc:  # e.g. EIO of a delayed write: recorded, not raised at shutdown
                    self.close_error = exc.strerror or str(exc)


class MemorySink:
    """Keeps FrameResults in a list (tests, replay)."""

    def __init__(self) -> None:
        self.frames: list[FrameResult] = []
        self._lock = threading.Lock()

    def write(self, fr: FrameResult) -> None:
        with self._lock:
            self.frames.append(fr)

    def close(self) -> None:
        pass
