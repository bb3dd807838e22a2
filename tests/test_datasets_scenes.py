"""Waymo v1 Frame and TF-Example readers against the real files (and the synthetic example)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from carlink.datasets import frames as frames_module
from carlink.datasets.frames import CameraName
from carlink.datasets.imagesize import image_size
from carlink.datasets.scene import detect_scene_format, read_frames, summarize_scene
from carlink.datasets.synthetic import SyntheticSpec, make_synthetic_frames, write_synthetic_scene
from carlink.datasets.tf_example import context_and_index, read_tf_example_frames
from carlink.datasets.waymo import read_waymo_frames
from carlink.detection import WaymoClass


@pytest.fixture(scope="module")
def expected(data_dir: Path) -> dict:
    return json.loads((data_dir / "waymo" / "v1_frames" / "expected.json").read_text())


@pytest.fixture()
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every cv2.imdecode call (the real one still runs)."""
    calls = [0]
    real = cv2.imdecode

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imdecode", counting)
    monkeypatch.setattr(frames_module.cv2, "imdecode", counting)
    return calls


@pytest.mark.parametrize("name", ["pvps_data_one_frame.tfrecord", "mmdet3d_val.tfrecord"])
def test_every_field_of_expected_json(data_dir: Path, expected: dict, name: str, count_decodes) -> None:
    frames = list(read_waymo_frames(data_dir / "waymo" / "v1_frames" / name))
    want_frames = expected[name]
    assert len(frames) == len(want_frames)
    for frame, want in zip(frames, want_frames):
        assert frame.context_name == want["context_name"]
        assert frame.timestamp_micros == want["timestamp_micros"]
        assert frame.stats.time_of_day == want["time_of_day"]
        assert frame.stats.location == want["location"]
        assert frame.stats.weather == want["weather"]
        assert frame.n_laser_labels == want["n_laser_labels"]
        assert {c.name for c in frame.cameras} == set(want["cameras"])
        for cam_name, cam in want["cameras"].items():
            camera = CameraName[cam_name]
            cal = frame.calibrations[camera]
            assert (cal.width, cal.height) == (cam["calibration"]["width"], cam["calibration"]["height"])
            image = frame.image(camera)
            if "image" in cam:
                assert image is not None
                assert len(image.data) == cam["image"]["jpeg_bytes"]
                assert hashlib.sha256(image.data).hexdigest() == cam["image"]["sha256"] == image.sha256
                assert (image.width, image.height) == (cam["image"]["width"], cam["image"]["height"])
                assert image.pose_timestamp == cam["image"]["pose_timestamp"]
                assert image.encoding == "jpeg"
            else:
                assert image is None
            labels = frame.labels.get(camera, ())
            assert len(labels) == len(cam["labels"])
            for got, lab in zip(labels, cam["labels"]):
                assert got.id == lab["id"]
                assert got.type == WaymoClass[lab["type"].removeprefix("TYPE_")]
                assert (got.box.center_x, got.box.center_y, got.box.length, got.box.width) == (
                    lab["center_x"], lab["center_y"], lab["length"], lab["width"])
    assert count_decodes[0] == 0  # everything above came from headers and labels


def test_labels_and_summary_without_any_image_decode(waymo_frame_file: Path, tf_example_files: list[Path],
                                                     count_decodes) -> None:
    summary = summarize_scene(waymo_frame_file)
    assert summary.labels == 66 and summary.labels_by_type == Counter(vehicle=50, pedestrian=15, cyclist=1)
    assert {n: c.labels for n, c in summary.cameras.items()} == {
        "FRONT": 13, "FRONT_LEFT": 29, "SIDE_LEFT": 3, "FRONT_RIGHT": 9, "SIDE_RIGHT": 12}
    n_labels = sum(len(f.all_labels()) for f in read_frames(tf_example_files[0]))
    assert n_labels == 214
    assert count_decodes[0] == 0
    # ...and decoding is lazy but real: it happens on request, once per call.
    image = next(read_waymo_frames(waymo_frame_file)).image(CameraName.SIDE_LEFT)
    pixels = image.decode()
    assert pixels.shape == (886, 1920, 3) and pixels.dtype == np.uint8
    assert count_decodes[0] == 1


def test_jpeg_header_size_matches_a_real_decode(data_dir: Path) -> None:
    jpeg = next((data_dir / "other_driving_images" / "nuscenes").glob("*.jpg")).read_bytes()
    png = (data_dir / "other_driving_images" / "kitti" / "000007.png").read_bytes()
    for data in (jpeg, png):
        h, w = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert image_size(data) == (w, h)
    assert image_size(b"not an image") is None


def test_labels_only_frame_has_no_images(waymo_labels_only_file: Path) -> None:
    (frame,) = read_frames(waymo_labels_only_file)
    assert frame.images == () and len(frame.all_labels()) == 11


# README 1b: frames and label counts per type of the three real 1 Hz sequences.
TF_EXAMPLE_COUNTS = {
    "segment-10017090168044687777_6380_000_6400_000_with_camera_labels.tfrecord": {"vehicle": 214},
    "segment-10023947602400723454_1120_000_1140_000_with_camera_labels.tfrecord": {"vehicle": 440, "pedestrian": 393, "cyclist": 3},
    "segment-1005081002024129653_5313_150_5333_150_with_camera_labels.tfrecord": {"vehicle": 277, "pedestrian": 28},
}


def test_tf_example_sequences(tf_example_files: list[Path]) -> None:
    assert sorted(p.name for p in tf_example_files) == sorted(TF_EXAMPLE_COUNTS)
    for path in tf_example_files:
        assert detect_scene_format(path) == "tf-example"
        frames = list(read_tf_example_frames(path))
        assert len(frames) == 20
        assert [f.frame_index for f in frames] == list(range(0, 200, 10))  # 1 Hz out of 10 Hz
        assert all(f.timestamp_micros is None for f in frames)
        assert [f.time_s for f in frames] == [i / 1.0 for i in range(20)]
        assert {f.context_name for f in frames} == {path.name.removeprefix("segment-").removesuffix("_with_camera_labels.tfrecord")}
        types = Counter(lab.type.label for f in frames for _, lab in f.all_labels())
        assert types == Counter(TF_EXAMPLE_COUNTS[path.name])
        per_frame = [len(f.all_labels()) for f in frames]
        for f in frames:
            (image,) = f.images
            assert image.camera == CameraName.FRONT and (image.width, image.height) == (640, 640)
            for _, lab in f.all_labels():  # pixels of the stored 640 x 640 image
                x1, y1, x2, y2 = lab.box.to_xyxy()
                assert -0.5 <= x1 < x2 <= 640.5 and -0.5 <= y1 < y2 <= 640.5
        assert min(per_frame) >= 1


def test_tf_example_image_decodes_to_stored_size(tf_example_files: list[Path]) -> None:
    frame = next(read_tf_example_frames(tf_example_files[1]))
    assert frame.images[0].decode().shape == (640, 640, 3)


def test_tf_example_box_is_normalised_coordinates_times_stored_size(tf_example_files: list[Path]) -> None:
    from carlink.datasets import tf_example_pb2
    from carlink.datasets.tfrecord import read_records

    raw = next(read_records(tf_example_files[0]))
    ex = tf_example_pb2.Example()
    ex.ParseFromString(raw)
    f = ex.features.feature
    x1 = f["image/object/bbox/xmin"].float_list.value[0]
    y2 = f["image/object/bbox/ymax"].float_list.value[0]
    label = next(read_tf_example_frames(tf_example_files[0])).labels[CameraName.FRONT][0]
    bx1, _, _, by2 = label.box.to_xyxy()
    assert bx1 == pytest.approx(x1 * 640) and by2 == pytest.approx(y2 * 640)


def test_filename_parsing() -> None:
    assert context_and_index("segment-1005081002024129653_5313_150_5333_150_with_camera_labels_190.tfrecord") == (
        "1005081002024129653_5313_150_5333_150", 190)
    assert context_and_index("no index here") == ("no index here", None)


def test_synthetic_scene_round_trips_through_the_real_reader(tmp_path: Path) -> None:
    spec = SyntheticSpec(frames=2, objects_per_camera=3)
    made = make_synthetic_frames(spec)
    path = write_synthetic_scene(tmp_path / "syn.tfrecord", spec)
    read = list(read_frames(path))
    assert len(read) == 2
    for a, b in zip(made, read):
        assert b.timestamp_micros == a.timestamp_micros
        assert [im.data for im in b.images] == [im.data for im in a.images]
        assert {c: [(l.box, l.type, l.id) for l in ls] for c, ls in b.labels.items()} == {
            c: [(l.box, l.type, l.id) for l in ls] for c, ls in a.labels.items()}
    # The drawn objects are where the labels say: the box centre has the object's colour.
    img = read[0].images[0].decode()
    for label in read[0].labels[read[0].images[0].camera]:
        x1, y1, x2, y2 = (int(v) for v in label.box.to_xyxy())
        patch = img[y1 + 2:y2 - 2, x1 + 2:x2 - 2].reshape(-1, 3).mean(0)
        assert patch.max() > 150 and patch.min() < 90  # saturated object colour, not grey road
    assert make_synthetic_frames(spec)[0].images[0].data == made[0].images[0].data  # deterministic
