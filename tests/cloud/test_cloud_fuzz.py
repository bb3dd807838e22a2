"""Thousands of random and mutated requests; the server answers each with a status and keeps serving."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carlink.proto import inference_pb2 as pb
from carlink.wire import detections_from_proto, detections_to_proto, unix_us
from carlink.zoo.registry import get_model

from cloud_testkit import front_jpeg, infer_request, running_server, stub_for

MODEL = "hog-daimler-fast"
# Statuses a well-behaved server may give a malformed request; INTERNAL or UNKNOWN would be a bug.
EXPECTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
FUZZ = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def seeds(waymo_frame_file) -> dict[int, bytes]:
    """Small valid images of each encoding, cut from the real FRONT frame, to mutate."""
    image = cv2.imdecode(np.frombuffer(front_jpeg(waymo_frame_file), np.uint8), cv2.IMREAD_COLOR)
    small = cv2.resize(image, (192, 128), interpolation=cv2.INTER_AREA)
    return {pb.ENCODING_JPEG: cv2.imencode(".jpg", small)[1].tobytes(),
            pb.ENCODING_PNG: cv2.imencode(".png", small)[1].tobytes(),
            pb.ENCODING_RAW_BGR: small.tobytes()}


@pytest.fixture(scope="module")
def server():
    with running_server(models=("noop", MODEL), max_payload_bytes=1_000_000, max_pixels=3_000_000,
                        max_concurrency=64) as s:
        yield s


@pytest.fixture(scope="module")
def stub(server):
    with stub_for(server) as s:
        yield s


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """Bit flips, overwritten runs, truncation, splices and repeats of a valid payload."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "header"]))
        pos = draw(st.integers(0, max(0, len(buf) - 1)))
        if kind == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            buf[pos:pos + len(chunk)] = chunk
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = draw(st.binary(max_size=64))
        else:  # the header, where sizes live
            hpos = draw(st.integers(0, min(40, max(0, len(buf) - 1))))
            if buf:
                buf[hpos] = draw(st.integers(0, 255))
    return bytes(buf)


@st.composite
def requests(draw, seeds: dict[int, bytes]) -> pb.InferRequest:
    encoding = draw(st.sampled_from([pb.ENCODING_JPEG, pb.ENCODING_PNG, pb.ENCODING_RAW_BGR, 0, 7]))
    base = seeds.get(encoding, seeds[pb.ENCODING_JPEG])
    payload = draw(st.one_of(mutated(base), st.binary(max_size=2048), st.just(base)))
    req = pb.InferRequest(
        task=draw(st.sampled_from(["front_det", "", "x" * 65, "täsk"])),
        model=draw(st.sampled_from(["noop", "noop", MODEL, "nope", ""])),
        encoding=encoding, payload=payload, frame_id=draw(st.integers(0, 2**64 - 1)),
        capture_time_unix_us=draw(st.integers(-(2**63), 2**63 - 1)),
        deadline_unix_us=draw(st.sampled_from([0, unix_us() - 10**6, unix_us() + 10**8, -(2**63), 2**63 - 1])),
    )
    if draw(st.booleans()):
        req.payload_size.CopyFrom(pb.ImageSize(width=draw(st.sampled_from([0, 1, 192, 2**32 - 1])),
                                               height=draw(st.sampled_from([0, 1, 128, 2**32 - 1]))))
    if draw(st.booleans()):
        req.original_size.CopyFrom(pb.ImageSize(width=draw(st.integers(0, 2**32 - 1)),
                                                height=draw(st.integers(0, 2**32 - 1))))
    return req


def test_fuzzed_requests_get_a_status_and_the_server_survives(stub, seeds, waymo_frame_file):
    seen: dict[grpc.StatusCode, int] = {}

    @FUZZ
    @given(req=requests(seeds))
    def check(req):
        try:
            stub.Infer(req, timeout=10)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            assert exc.details(), f"{code} without a message"
        assert code in EXPECTED, f"{code}: {req.model=} {req.encoding=} {len(req.payload)=}"
        seen[code] = seen.get(code, 0) + 1

    check()
    assert sum(seen.values()) >= 1000
    assert {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT} <= set(seen)
    _assert_still_correct(stub, waymo_frame_file)


def test_random_bytes_as_the_message_itself(server, stub, waymo_frame_file):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        raw_infer = channel.unary_unary("/carlink.v1.Inference/Infer")  # no (de)serializers: raw bytes

        @FUZZ
        @given(blob=st.binary(max_size=512))
        def check(blob):
            try:
                raw_infer(blob, timeout=10)
            except grpc.RpcError as exc:
                # Bytes that are not an InferRequest: gRPC's own deserialisation error is INTERNAL.
                assert exc.code() in EXPECTED | {grpc.StatusCode.INTERNAL}

        check()
    _assert_still_correct(stub, waymo_frame_file)


def _assert_still_correct(stub, waymo_frame_file):
    jpeg = front_jpeg(waymo_frame_file)
    direct = get_model(MODEL).detect(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    reply = stub.Infer(infer_request(jpeg, model=MODEL), timeout=30)
    assert detections_from_proto(reply.detections) == detections_from_proto(detections_to_proto(direct))
