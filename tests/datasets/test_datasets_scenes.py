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


# README 1b: per real 1 Hz sequence (context name), (min, max) boxes per frame and label counts per type.
TF_EXAMPLE_COUNTS = {
    "10017090168044687777_6380_000_6400_000": ((4, 14), {"vehicle": 214}),
    "10023947602400723454_1120_000_1140_000": ((1, 51), {"vehicle": 440, "pedestrian": 393, "cyclist": 3}),
    "1005081002024129653_5313_150_5333_150": ((11, 22), {"vehicle": 277, "pedestrian": 28}),
    "10061305430875486848_1080_000_1100_000": ((2, 19), {"vehicle": 207, "pedestrian": 12}),
    "10072140764565668044_4060_000_4080_000": ((13, 72), {"vehicle": 1010, "pedestrian": 122}),
    "10075870402459732738_1060_000_1080_000": ((2, 23), {"vehicle": 286}),
    "10082223140073588526_6140_000_6160_000": ((13, 25), {"vehicle": 287, "pedestrian": 57}),
    "10094743350625019937_3420_000_3440_000": ((24, 32), {"vehicle": 578}),
    "10096619443888687526_2820_000_2840_000": ((0, 6), {"vehicle": 71}),
    "10107710434105775874_760_000_780_000": ((2, 7), {"vehicle": 65}),
    "10153695247769592104_787_000_807_000": ((25, 39), {"vehicle": 647}),
    "10206293520369375008_2796_800_2816_800": ((0, 9), {"vehicle": 89, "pedestrian": 8}),
    "10212406498497081993_5300_000_5320_000": ((14, 51), {"vehicle": 400, "pedestrian": 76}),
    "1022527355599519580_4866_960_4886_960": ((26, 53), {"vehicle": 501, "pedestrian": 186}),
    "10226164909075980558_180_000_200_000": ((25, 34), {"vehicle": 433, "pedestrian": 160}),
    "10231929575853664160_1160_000_1180_000": ((31, 55), {"vehicle": 606, "pedestrian": 188, "cyclist": 3}),
    "10235335145367115211_5420_000_5440_000": ((9, 56), {"vehicle": 674, "pedestrian": 21, "cyclist": 3}),
    "10241508783381919015_2889_360_2909_360": ((0, 16), {"vehicle": 102, "pedestrian": 44}),
    "10275144660749673822_5755_561_5775_561": ((2, 18), {"vehicle": 191, "pedestrian": 6}),
    "10327752107000040525_1120_000_1140_000": ((2, 16), {"vehicle": 237}),
    "10391312872392849784_4099_400_4119_400": ((1, 21), {"vehicle": 210, "pedestrian": 7}),
    "10444454289801298640_4360_000_4380_000": ((30, 49), {"vehicle": 510, "pedestrian": 274, "cyclist": 9}),
    "10455472356147194054_1560_000_1580_000": ((31, 40), {"vehicle": 666, "pedestrian": 71}),
    "10485926982439064520_4980_000_5000_000": ((53, 66), {"pedestrian": 661, "vehicle": 524, "cyclist": 10}),
    "10498013744573185290_1240_000_1260_000": ((27, 40), {"vehicle": 341, "pedestrian": 306, "cyclist": 4}),
    "10500357041547037089_1474_800_1494_800": ((24, 32), {"vehicle": 526, "pedestrian": 20}),
    "10517728057304349900_3360_000_3380_000": ((0, 7), {"vehicle": 68}),
    "1051897962568538022_238_170_258_170": ((12, 22), {"vehicle": 306, "pedestrian": 16}),
    "10526338824408452410_5714_660_5734_660": ((14, 20), {"vehicle": 324, "pedestrian": 12}),
    "10584247114982259878_490_000_510_000": ((4, 9), {"vehicle": 117}),
}


def test_tf_example_sequences(tf_example_files: list[Path]) -> None:
    names = [p.name.removeprefix("segment-").removesuffix("_with_camera_labels.tfrecord") for p in tf_example_files]
    assert sorted(names) == sorted(TF_EXAMPLE_COUNTS)
    for path, name in zip(tf_example_files, names):
        (least, most), counts = TF_EXAMPLE_COUNTS[name]
        assert detect_scene_format(path) == "tf-example"
        frames = list(read_tf_example_frames(path))
        assert len(frames) == 20
        assert [f.frame_index for f in frames] == list(range(0, 200, 10))  # 1 Hz out of 10 Hz
        assert all(f.timestamp_micros is None for f in frames)
        assert [f.time_s for f in frames] == [i / 1.0 for i in range(20)]
        assert {f.context_name for f in frames} == {name}
        types = Counter(lab.type.label for f in frames for _, lab in f.all_labels())
        assert types == Counter(counts)
        per_frame = [len(f.all_labels()) for f in frames]
        for f in frames:
            (image,) = f.images
            assert image.camera == CameraName.FRONT and (image.width, image.height) == (640, 640)
            for _, lab in f.all_labels():  # pixels of the stored 640 x 640 image
                x1, y1, x2, y2 = lab.box.to_xyxy()
                assert -0.5 <= x1 < x2 <= 640.5 and -0.5 <= y1 < y2 <= 640.5
        assert (min(per_frame), max(per_frame)) == (least, most)


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
