"""Shared helpers of the replay tests: a small HOG profile for the real 640x640 FRONT sequences."""

from __future__ import annotations

from pathlib import Path

from carlink.profile import VERSION, OnCarProfile, OptionProfile, Profile, TaskProfile


def hog_front_profile(folder: Path, deadline_ms: float = 400.0) -> Path:
    """A profile for the FRONT camera of the real 1 Hz TF-Example scenes (640x640), written by the
    profile model as the profiler writes its files: on-car the fast HOG variant, in the cloud the
    default HOG at half and full size. Payloads and runtimes are rough figures for those images;
    utilities are placeholders the measured mode replaces with the real AP of each run."""
    def jpeg75(oid: str, resize, payload: tuple[float, float], runtime: tuple[float, float], utility: float):
        return OptionProfile(id=oid, model="hog-default", resize=resize, codec="jpeg", jpeg_quality=75,
                             payload_bytes_mean=payload[0], payload_bytes_p95=payload[1],
                             runtime_ms_p50=runtime[0], runtime_ms_p99=runtime[1], utility=utility)

    profile = Profile(
        version=VERSION, description="test profile: HOG detectors on the 640x640 FRONT sequences",
        metric="AP50 (pedestrian)",
        tasks=[TaskProfile(
            name="FRONT", camera="FRONT", deadline_ms=deadline_ms, weight=1.0,
            on_car=OnCarProfile(id="on-car", model="hog-default-fast", utility=0.01,
                                runtime_ms_p50=12.0, runtime_ms_p99=20.0),
            options=[jpeg75("hog-320-q75", (320, 320), (14000, 18000), (15.0, 30.0), 0.02),
                     jpeg75("hog-640-q75", None, (47000, 60000), (70.0, 110.0), 0.03)])])
    path = folder / "hog_front_profile.json"
    profile.save(path)
    return path
