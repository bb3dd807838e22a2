"""Where fused results go: one JSON object per frame, one line each, to a file or stdout.

A line holds the frame id, its capture time, the link estimate and allocation summary used for
it, and per task: source ("cloud" or "on-car"), the option whose result it is, the option the
allocator chose, latency from capture, whether the deadline was met, what became of the cloud
request, and the detections (box centre/size in original-image pixels, score, class).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import IO, Any

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


class JsonLinesSink:
    """Writes each FrameResult as one JSON line; flushes per line so a reader can follow it."""

    def __init__(self, path: str | Path = "-", include_detections: bool = True) -> None:
        self._own = str(path) != "-"
        self._f: IO[str] = open(path, "a", encoding="utf-8") if self._own else sys.stdout
        self._include = include_detections
        self._lock = threading.Lock()
        self.written = 0

    def write(self, fr: FrameResult) -> None:
        line = json.dumps(frame_to_json(fr, self._include), allow_nan=False, separators=(",", ":"))
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()
            self.written += 1

    def close(self) -> None:
        with self._lock:
            if self._own and not self._f.closed:
                self._f.close()


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
