"""Shared helpers of the replay tests: a small HOG profile for the real 640x640 FRONT sequences."""

from __future__ import annotations

import json
from pathlib import Path


def hog_front_profile(folder: Path, deadline_ms: float = 400.0) -> Path:
    """A version-1 profile for the FRONT camera of the real 1 Hz TF-Example scenes (640x640):
    on-car the fast HOG variant, in the cloud the default HOG at half and full size. Payloads and
    runtimes are rough figures for those images; utilities are placeholders the measured mode
    replaces with the real AP of each run."""
    doc = {
        "schema": "carlink.profile",
        "version": 1,
        "description": "test profile: HOG detectors on the 640x640 FRONT sequences",
        "metric": "AP50 (pedestrian)",
        "tasks": [{
            "name": "FRONT", "camera": "FRONT", "deadline_ms": deadline_ms, "weight": 1.0,
            "on_car": {"id": "on-car", "model": "hog-default-fast", "utility": 0.01,
                       "runtime_ms_p50": 12.0, "runtime_ms_p99": 20.0},
            "options": [
                {"id": "hog-320-q75", "model": "hog-default", "resize": [320, 320], "codec": "jpeg",
                 "jpeg_quality": 75, "payload_bytes_mean": 14000, "payload_bytes_p95": 18000,
                 "runtime_ms_p50": 15.0, "runtime_ms_p99": 30.0, "utility": 0.02},
                {"id": "hog-640-q75", "model": "hog-default", "codec": "jpeg", "jpeg_quality": 75,
                 "payload_bytes_mean": 47000, "payload_bytes_p95": 60000,
                 "runtime_ms_p50": 70.0, "runtime_ms_p99": 110.0, "utility": 0.03},
            ],
        }],
    }
    path = folder / "hog_front_profile.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path
