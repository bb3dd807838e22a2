"""Image headers read without decoding, and Detection <-> proto conversion."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carlink.cloud.decode import BadImage, DecodeLimits, PayloadTooLarge, check_header, decode
from carlink.detection import Box2D, Detection, WaymoClass
from carlink.proto import inference_pb2 as pb
from carlink.wire import (
    ImageHeaderError, detections_from_proto, detections_to_proto, probe_jpeg, probe_png, serialize_infer_request,
)

from cloud_testkit import front_jpeg

LIMITS = DecodeLimits(max_payload_bytes=4_000_000, max_pixels=3_000_000, max_side=8192)


def test_jpeg_size_from_header_of_real_waymo_image(waymo_frame_file):
    h = probe_jpeg(front_jpeg(waymo_frame_file))
    assert (h.width, h.height) == (1920, 1280)


def test_png_size_from_header_of_real_kitti_image(data_dir):
    data = (data_dir / "other_driving_images" / "kitti" / "000007.png").read_bytes()
    h = probe_png(data)
    assert (h.width, h.height) == (1242, 375)
    assert decode(data, pb.ENCODING_PNG, None, LIMITS).shape == (375, 1242, 3)


def test_progressive_jpeg_header_is_found():
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    h = probe_jpeg(buf.tobytes())
    assert (h.width, h.height) == (53, 37)


def test_huge_png_header_is_refused_before_decoding():
    ihdr = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sIIBBBBBI", 13, b"IHDR", 30000, 30000, 8, 2, 0, 0, 0, 0)
    with pytest.raises(PayloadTooLarge, match="30000x30000"):
        check_header(ihdr + b"\x00" * 100, pb.ENCODING_PNG, None, LIMITS)


@pytest.mark.parametrize("data, match", [
    (b"", "empty payload"),
    (b"\xff\xd8\xff", "no frame header"),
    (b"\xff\xd8\x00\x00", "expected a marker at offset 2"),
    (b"GIF89a" + b"\x00" * 40, "SOI marker"),
])
def test_malformed_jpeg_headers_say_what_is_wrong(data, match):
    with pytest.raises(BadImage, match=match):
        check_header(data, pb.ENCODING_JPEG, None, LIMITS)


def test_png_signature_and_chunk_checks():
    with pytest.raises(ImageHeaderError, match="signature"):
        probe_png(b"\x89PNX" + b"\x00" * 40)
    with pytest.raises(ImageHeaderError, match="expected IHDR"):
        probe_png(b"\x89PNG\r\n\x1a\n" + struct.pack(">I4s", 13, b"IDAT") + b"\x00" * 30)


def test_payload_size_disagreeing_with_header_is_refused(waymo_frame_file):
    with pytest.raises(BadImage, match="disagrees"):
        check_header(front_jpeg(waymo_frame_file), pb.ENCODING_JPEG, (640, 480), LIMITS)


def test_detections_round_trip_through_proto():
    dets = [Detection(Box2D(10.5, 20.25, 30.0, 60.0), 0.75, WaymoClass.PEDESTRIAN),
            Detection(Box2D(1000.0, 500.0, 200.0, 100.0), 0.5, WaymoClass.VEHICLE)]
    msg = pb.InferResponse(detections=detections_to_proto(dets))
    assert detections_from_proto(pb.InferResponse.FromString(msg.SerializeToString()).detections) == dets


@settings(max_examples=200, deadline=None)
@given(
    payload=st.one_of(st.binary(max_size=300), st.sampled_from([b"", bytes(127), bytes(128), bytes(16384), bytes(2**21 + 3)])),
    task=st.text(max_size=20), frame_id=st.integers(0, 2**64 - 1),
    deadline=st.integers(-(2**63), 2**63 - 1), width=st.integers(0, 2**32 - 1),
)
def test_infer_request_serialised_with_appended_payload_parses_as_the_whole_message(
    payload, task, frame_id, deadline, width,
):
    header = pb.InferRequest(task=task, model="m", encoding=pb.ENCODING_JPEG, frame_id=frame_id,
                             deadline_unix_us=deadline, payload_size=pb.ImageSize(width=width, height=3))
    whole = pb.InferRequest()
    whole.CopyFrom(header)
    whole.payload = payload
    parsed = pb.InferRequest.FromString(serialize_infer_request(header, payload))
    assert parsed == whole
    assert len(serialize_infer_request(header, payload)) == whole.ByteSize()


def test_infer_request_header_with_a_payload_is_refused():
    with pytest.raises(ValueError, match="already carries a payload"):
        serialize_infer_request(pb.InferRequest(payload=b"x"), b"y")
