"""Shared helpers of the replay tests: a small HOG profile for the real 640x640 FRONT sequences."""

from __future__ import annotations

import json
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


CAR_CAMERAS = ("FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT")


def frame_value(frame_id: str, option: str) -> float:
    """A deterministic stand-in for a measured per-frame utility in [0, 0.9] (CRC-32 of id and option)."""
    import zlib

    return round((zlib.crc32(f"{frame_id}/{option}".encode()) % 900) / 1000.0, 6)


def on_car_value(frame_id: str) -> float:
    return round(frame_value(frame_id, "on-car") / 3, 6)


def per_frame_profile(path: Path, frame_ids: list[str], cameras=CAR_CAMERAS, deadline_ms: float = 200.0,
                      description: str = "test profile with per-frame values",
                      frames_by_camera: dict[str, list[str]] | None = None) -> Path:
    """A version-2 profile with one task per camera, each listing ``frame_ids`` (or its entry of
    ``frames_by_camera``) with per-frame utilities (:func:`frame_value`, :func:`on_car_value`) and
    payloads: an on-car option and two cloud options ("small", "large")."""
    import zlib

    def option(oid: str, ids: list[str], base: int, p50: float, resize) -> dict:
        pays = [base + zlib.crc32(f"{f}/{oid}".encode()) % 20000 for f in ids]
        utils = [frame_value(f, oid) for f in ids]
        return {"id": oid, "model": "hog-default", "resize": resize, "codec": "jpeg", "jpeg_quality": 75,
                "payload_bytes_mean": sum(pays) / len(pays), "payload_bytes_p95": max(pays),
                "payloads": pays, "runtime_ms_p50": p50, "runtime_ms_p99": p50 * 1.5,
                "utility": round(sum(utils) / len(utils), 6), "utilities": utils}

    tasks = []
    for cam in cameras:
        ids = (frames_by_camera or {}).get(cam, frame_ids)
        on_car = [on_car_value(f) for f in ids]
        tasks.append({
            "name": cam, "camera": cam, "deadline_ms": deadline_ms, "weight": 1.0, "classes": ["vehicle"],
            "frames": [{"id": f, "labels": 1} for f in ids],
            "on_car": {"id": "on-car", "model": "hog-default-fast", "utility": round(sum(on_car) / len(on_car), 6),
                       "utilities": on_car, "runtime_ms_p50": 20.0, "runtime_ms_p99": 30.0},
            "options": [option("small", ids, 8000, 20.0, [320, 320]),
                        option("large", ids, 40000, 40.0, None)],
        })
    doc = {"schema": "carlink.profile", "version": 2, "description": description, "metric": "test",
           "tasks": tasks}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def frame_ids(files) -> list[str]:
    """The stable ids of every frame of these scene files, in order."""
    from carlink.datasets.scene import read_frames

    return [f.stable_id for p in files for f in read_frames(p)]


def truncated_copy(src: Path, dst: Path, records: int) -> Path:
    """The first ``records`` records of a TFRecord file, byte for byte."""
    from itertools import islice

    from carlink.datasets.tfrecord import read_records, write_records

    write_records(dst, islice(read_records(src), records))
    return dst


def sweep_inputs(folder, tf_example_files, bandwidth_dir):
    """A small sweep's inputs: three real sequences as one three-camera car, a per-frame truth
    profile for their frames, and two real traces (mahimahi and a 1 s CSV)."""
    from carlink.replay.sweep import TraceRef

    files = tf_example_files[:3]
    truth = per_frame_profile(folder / "truth.json", frame_ids(files), cameras=("FRONT", "FRONT_LEFT", "FRONT_RIGHT"))
    traces = (TraceRef(str(bandwidth_dir / "mahimahi" / "TMobile-LTE-short.up")),
              TraceRef(str(bandwidth_dir / "nyu_mets" / "Car_1.csv"), "mbps-csv"))
    return files, truth, traces
