"""Frame sources on the real recorded data: pacing at timestamps, camera selection, folders."""

from __future__ import annotations

import threading
import time

import pytest

from carlink.clock import VirtualClock, WallClock
from carlink.onboard.config import SourceConfig
from carlink.onboard.sources import SourceError, open_source


def test_tf_example_frames_paced_at_their_timestamps(tf_example_files):
    # The 1 Hz sequences: frame_index 0, 10, ..., 190 of a 10 Hz segment, so one second apart.
    clock = VirtualClock(100.0)
    cfg = SourceConfig(kind="tf-example", path=str(tf_example_files[0]), realtime=True)
    frames = list(open_source(cfg, clock, {"FRONT"}))
    assert len(frames) == 20
    assert [f.capture_time - 100.0 for f in frames] == pytest.approx([float(i) for i in range(20)])
    assert all(f.images["FRONT"].shape == (640, 640, 3) for f in frames)
    assert [f.frame_id for f in frames] == list(range(20))


def test_waymo_frame_only_needed_cameras_decoded_and_looped(waymo_frame_file):
    clock = VirtualClock()
    cfg = SourceConfig(kind="waymo", path=str(waymo_frame_file), loop=True, rate_hz=10, max_frames=4)
    frames = list(open_source(cfg, clock, {"FRONT", "SIDE_LEFT"}))
    assert len(frames) == 4
    assert set(frames[0].images) == {"FRONT", "SIDE_LEFT"}
    assert frames[0].images["FRONT"].shape == (1280, 1920, 3)
    assert frames[0].images["SIDE_LEFT"].shape == (886, 1920, 3)
    assert [f.capture_time for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_waymo_frame_without_images_yields_nothing(waymo_labels_only_file):
    cfg = SourceConfig(kind="waymo", path=str(waymo_labels_only_file))
    assert list(open_source(cfg, VirtualClock(), {"FRONT"})) == []


def test_folder_source_and_interruptible_wait(tmp_path, data_dir):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    # Links, not copies: the data stays where it is.
    (imgs / "a.png").symlink_to(data_dir / "other_driving_images" / "kitti" / "000007.png")
    nus = next((data_dir / "other_driving_images" / "nuscenes").glob("*.jpg"))
    (imgs / "b.jpg").symlink_to(nus)
    (imgs / "notes.txt").write_text("not an image")
    stop = threading.Event()
    cfg = SourceConfig(kind="folder", path=str(imgs), rate_hz=0.5, camera_name="FRONT")
    src = open_source(cfg, WallClock(), {"FRONT"}, stop)
    it = iter(src)
    first = next(it)
    assert first.images["FRONT"].shape == (375, 1242, 3)
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    assert list(it) == []  # the 2 s gap to the next frame is cut short by the stop event
    assert time.monotonic() - t0 < 1.0


def test_source_errors_name_the_path(tmp_path):
    with pytest.raises(SourceError, match="not a folder"):
        list(open_source(SourceConfig(kind="folder", path=str(tmp_path / "x")), VirtualClock(), {"FRONT"}))
    with pytest.raises(SourceError, match="no images"):
        list(open_source(SourceConfig(kind="folder", path=str(tmp_path)), VirtualClock(), {"FRONT"}))
    with pytest.raises(SourceError, match="cannot open camera"):
        list(open_source(SourceConfig(kind="camera", device=str(tmp_path / "nocam.mp4")), VirtualClock(), {"FRONT"}))


def test_camera_source_reads_a_video_device_or_url(tmp_path, waymo_frame_file):
    """cv2.VideoCapture takes device indices and URLs alike; a video file stands in for the camera."""
    import cv2

    from carlink.datasets.waymo import read_waymo_frames

    (frame,) = list(read_waymo_frames(waymo_frame_file))
    img = cv2.resize(frame.images[0].decode(), (320, 214))
    path = tmp_path / "cam.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 214))
    for _ in range(5):
        w.write(img)
    w.release()
    cfg = SourceConfig(kind="camera", device=str(path), camera_name="FRONT", max_frames=3)
    src = open_source(cfg, VirtualClock(), {"FRONT"})
    frames = list(src)
    src.close()
    assert len(frames) == 3 and frames[0].images["FRONT"].shape == (214, 320, 3)
