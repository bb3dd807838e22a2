"""JPEG strips joined with restart markers decode exactly like the image encoded in one call."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carlink.onboard.encoder import EncodeSpec, ParallelEncoder
from carlink.onboard.jpeg_strips import StripJoinError, join_strips, strip_rows
from carlink.wire import probe_jpeg
from carlink.proto import inference_pb2 as pb


def _jpeg(img: np.ndarray, quality: int = 90, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality, *params])
    assert ok
    return buf.tobytes()


def _strips(img: np.ndarray, n: int, quality: int = 90, *params: int) -> list[bytes]:
    rows = strip_rows(img.shape[0], n)
    return [_jpeg(img[r:r + rows], quality, *params) for r in range(0, img.shape[0], rows)]


def _decode(data: bytes) -> np.ndarray:
    out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert out is not None, "cv2 could not decode the joined JPEG"
    return out


@pytest.fixture(scope="module")
def waymo_images(waymo_frame_file):
    from carlink.datasets.waymo import read_waymo_frames

    (frame,) = list(read_waymo_frames(waymo_frame_file))
    return {im.camera.name: im.decode() for im in frame.images}


@pytest.mark.parametrize("camera", ["FRONT", "SIDE_LEFT"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_joined_strips_of_real_camera_images_decode_to_the_same_pixels(waymo_images, camera, n):
    img = waymo_images[camera]
    joined = join_strips(_strips(img, n), img.shape[0])
    assert np.array_equal(_decode(joined), _decode(_jpeg(img)))
    head = probe_jpeg(joined)
    assert (head.encoding, head.width, head.height) == (pb.ENCODING_JPEG, img.shape[1], img.shape[0])
    assert abs(len(joined) - len(_jpeg(img))) < 64 * n  # a DRI segment and restart markers only


@settings(max_examples=40, deadline=None)
@given(h=st.integers(17, 200), w=st.integers(1, 200), n=st.integers(2, 12), q=st.integers(20, 100),
       sampling=st.sampled_from([cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
                                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]),
       seed=st.integers(0, 2**32 - 1))
def test_joined_strips_match_for_any_size_quality_and_subsampling(h, w, n, q, sampling, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    params = (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling)
    joined = join_strips(_strips(img, n, q, *params), h)
    assert np.array_equal(_decode(joined), _decode(_jpeg(img, q, *params)))


def test_strips_with_other_tables_or_a_wrong_height_are_refused():
    img = np.random.default_rng(1).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    a, b = _jpeg(img[:32], 90), _jpeg(img[32:], 50)
    with pytest.raises(StripJoinError, match="strip 1 was encoded with other tables"):
        join_strips([a, b], 64)
    with pytest.raises(StripJoinError, match="strips hold 64 rows, expected 70"):
        join_strips(_strips(img, 2), 70)
    with pytest.raises(StripJoinError, match="not a whole number of 16-row MCUs"):
        join_strips([_jpeg(img[:24]), _jpeg(img[24:])], 64)
    with pytest.raises(StripJoinError, match="not a JPEG"):
        join_strips([b"GIF89a", a], 64)
    progressive = _jpeg(img[:32], 90, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    with pytest.raises(StripJoinError, match="only baseline"):
        join_strips([progressive, progressive], 64)


def test_encoder_cuts_large_full_size_jpegs_and_leaves_the_rest_whole(waymo_images):
    front, side = waymo_images["FRONT"], waymo_images["SIDE_LEFT"]
    enc = ParallelEncoder(2)
    try:
        out = enc.encode_many({
            "front": (front, EncodeSpec("jpeg", 85)),
            "side": (side, EncodeSpec("jpeg", 75, (640, 295))),
        })
        submitted: list[tuple[int, ...]] = []
        orig = enc.submit
        enc.submit = lambda image, spec: (submitted.append(image.shape[:2]), orig(image, spec))[1]
        enc.encode_many({"front": (front, EncodeSpec("jpeg", 85)), "side": (side, EncodeSpec("jpeg", 75, (640, 295)))})
    finally:
        enc.close()
    assert sorted(submitted) == [(640, 1920), (640, 1920), (886, 1920)], "front in 2 strips, resized side whole"
    assert np.array_equal(_decode(out["front"].payload), _decode(_jpeg(front, 85)))
    assert out["front"].size == out["front"].original_size == (1920, 1280)
    assert _decode(out["side"].payload).shape == (295, 640, 3)
