"""The inference server on loopback: real images, real models, every refusal with its status code."""

from __future__ import annotations

import struct
import threading
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from carlink.cloud.config import ServerConfig
from carlink.proto import inference_pb2 as pb
from carlink.wire import detections_from_proto, detections_to_proto, unix_us
from carlink.zoo.registry import get_model

from cloud_testkit import SleepDetector, front_jpeg, infer_request, running_server, stub_for
from timing_testkit import wait_for

HOG = "hog-default"


@pytest.fixture(scope="module")
def front(waymo_frame_file) -> bytes:
    return front_jpeg(waymo_frame_file)


@pytest.fixture(scope="module")
def hog_server():
    with running_server(models=("noop", HOG), tasks=("front_det",), max_payload_bytes=2_000_000,
                        max_pixels=4_000_000, metrics_port=0) as server:
        yield server


@pytest.fixture(scope="module")
def stub(hog_server):
    with stub_for(hog_server) as s:
        yield s


def _code(call, *args, **kw) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    return info.value.code(), info.value.details()


def test_detections_through_grpc_equal_direct_call(stub, front):
    image = cv2.imdecode(np.frombuffer(front, np.uint8), cv2.IMREAD_COLOR)
    direct = get_model(HOG).detect(image)
    assert direct, "the real FRONT frame should give HOG at least one pedestrian"
    reply = stub.Infer(infer_request(front, model=HOG, frame_id=7, capture_time_unix_us=unix_us(),
                                     deadline_unix_us=unix_us() + 30_000_000), timeout=30)
    # The proto carries scores as float32: compare with the direct result sent through the same message.
    assert detections_from_proto(reply.detections) == detections_from_proto(detections_to_proto(direct))
    assert (reply.model, reply.task, reply.frame_id, reply.untrained) == (HOG, "front_det", 7, False)
    assert (reply.decoded_size.width, reply.decoded_size.height) == (1920, 1280)
    t = reply.timings
    assert t.decode_ms > 0 and t.inference_ms > 0 and t.total_ms >= t.decode_ms + t.inference_ms
    assert t.batch_size == 1


def test_boxes_come_back_in_original_size(stub, front):
    image = cv2.imdecode(np.frombuffer(front, np.uint8), cv2.IMREAD_COLOR)
    half = cv2.resize(image, (960, 640), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", half, [cv2.IMWRITE_JPEG_QUALITY, 90])
    direct = get_model(HOG).detect(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))  # what the server decodes
    assert direct
    reply = stub.Infer(infer_request(jpeg.tobytes(), model=HOG, original_size=pb.ImageSize(width=1920, height=1280)),
                       timeout=30)
    got = detections_from_proto(reply.detections)
    assert len(got) == len(direct)
    for g, d in zip(got, direct):
        assert g.box.center_x == pytest.approx(2 * d.box.center_x) and g.box.length == pytest.approx(2 * d.box.length)


def test_png_and_raw_payloads_give_the_same_detections_as_direct(stub, front):
    image = cv2.imdecode(np.frombuffer(front, np.uint8), cv2.IMREAD_COLOR)[300:940, 0:960]
    direct = detections_from_proto(detections_to_proto(get_model(HOG).detect(image)))
    _, png = cv2.imencode(".png", image)  # lossless: the server sees exactly these pixels
    r_png = stub.Infer(infer_request(png.tobytes(), model=HOG, encoding=pb.ENCODING_PNG), timeout=30)
    r_raw = stub.Infer(infer_request(np.ascontiguousarray(image).tobytes(), model=HOG, encoding=pb.ENCODING_RAW_BGR,
                                     payload_size=pb.ImageSize(width=960, height=640)), timeout=30)
    assert (r_png.decoded_size.width, r_png.decoded_size.height) == (960, 640)
    assert detections_from_proto(r_png.detections) == direct == detections_from_proto(r_raw.detections)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 64)
    body = struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + body + end


def _bad_inputs(front: bytes) -> dict[str, tuple[pb.InferRequest, grpc.StatusCode, str]]:
    past = unix_us() - 1_000_000
    return {
        "garbage": (infer_request(bytes(range(256)) * 40), grpc.StatusCode.INVALID_ARGUMENT, "not a JPEG"),
        "truncated jpeg": (infer_request(front[: len(front) // 2]), grpc.StatusCode.INVALID_ARGUMENT, "truncated JPEG"),
        "oversize payload": (infer_request(front + b"\x00" * 1_600_000), grpc.StatusCode.INVALID_ARGUMENT,
                             "exceeds the limit of 2000000"),
        "30000x30000 png": (infer_request(_png_header(30000, 30000), encoding=pb.ENCODING_PNG),
                            grpc.StatusCode.INVALID_ARGUMENT, "30000x30000"),
        "unknown model": (infer_request(front, model="yolo-v99"), grpc.StatusCode.NOT_FOUND, "unknown model"),
        "unknown task": (infer_request(front, task="rear_lidar"), grpc.StatusCode.NOT_FOUND, "unknown task"),
        "empty task": (infer_request(front, task=""), grpc.StatusCode.INVALID_ARGUMENT, "task is empty"),
        "no encoding": (infer_request(front, encoding=pb.ENCODING_UNSPECIFIED), grpc.StatusCode.INVALID_ARGUMENT,
                        "unsupported encoding"),
        "raw size mismatch": (infer_request(b"\x00" * 100, encoding=pb.ENCODING_RAW_BGR,
                                            payload_size=pb.ImageSize(width=10, height=10)),
                              grpc.StatusCode.INVALID_ARGUMENT, "does not match 10x10x3"),
        "expired deadline": (infer_request(front, model=HOG, deadline_unix_us=past), grpc.StatusCode.DEADLINE_EXCEEDED,
                             "model not run"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(b"\xff\xd8").keys()))
def test_bad_input_gets_its_status_and_server_keeps_serving(stub, hog_server, front, case):
    request, code, message = _bad_inputs(front)[case]
    got_code, details = _code(stub.Infer, request, timeout=10)
    assert got_code == code, details
    assert message in details
    # The server is still fine: a valid request right after gets its answer.
    assert stub.Infer(infer_request(front), timeout=10).decoded_size.width == 1920


def test_expired_deadline_never_runs_the_model(front):
    slow = SleepDetector(0.0)
    with running_server(models=("sleep",), detectors={"sleep": [slow]}) as server, stub_for(server) as stub:
        code, _ = _code(stub.Infer, infer_request(front, model="sleep", deadline_unix_us=unix_us() - 1000), timeout=5)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert slow.calls == 0


def _in_flight(server) -> float:
    return server.metrics.registry.get_sample_value("carlink_cloud_in_flight")


# The queueing tests below wait until the server holds what they need (the first call running, the
# calls admitted) instead of sleeping a fixed time, and the held model runs long (2 s) next to the
# deadlines they test (150-300 ms): scheduling lag on a busy machine does not change what happens.

def test_deadline_passing_while_queued_drops_the_request_unrun(front):
    slow = SleepDetector(2.0)
    with running_server(models=("sleep",), detectors={"sleep": [slow]}) as server, stub_for(server) as stub:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(stub.Infer, infer_request(front, model="sleep"), timeout=30)
            assert wait_for(lambda: slow.calls == 1)  # the first now holds the model for 2 s
            # The second's deadline (150 ms) passes while the first still holds the model.
            second = pool.submit(_code, stub.Infer,
                                 infer_request(front, model="sleep", deadline_unix_us=unix_us() + 150_000), timeout=30)
            code, details = second.result()
            assert first.result().decoded_size.width == 1920
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
        assert slow.calls == 1
        assert b'carlink_cloud_drops_total{model="sleep",reason="deadline"} 1.0' in server.metrics.exposition()


def test_grpc_call_deadline_is_honoured_too(front):
    slow = SleepDetector(2.0)
    with running_server(models=("sleep",), detectors={"sleep": [slow]}) as server, stub_for(server) as stub:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(stub.Infer, infer_request(front, model="sleep"), timeout=30)
            assert wait_for(lambda: slow.calls == 1)
            code, _ = _code(stub.Infer, infer_request(front, model="sleep"), timeout=0.3)
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            first.result()
        assert wait_for(lambda: _in_flight(server) == 0)
        assert slow.calls == 1  # the second request was dropped from the queue unrun


def test_concurrency_limit_answers_resource_exhausted(front):
    slow = SleepDetector(2.0)
    with running_server(models=("sleep",), detectors={"sleep": [slow]}, max_concurrency=2) as server, \
            stub_for(server) as stub:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(stub.Infer, infer_request(front, model="sleep"), timeout=30) for _ in range(2)]
            assert wait_for(lambda: _in_flight(server) == 2 and slow.calls == 1)
            code, details = _code(stub.Infer, infer_request(front, model="sleep"), timeout=30)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "2 Infer calls" in details
            assert all(f.result().decoded_size.width == 1920 for f in held)
        assert stub.Infer(infer_request(front, model="sleep"), timeout=30).timings.queue_wait_ms < 1000


def test_dynamic_batching_groups_concurrent_requests(front):
    model = SleepDetector(1.0, batchable=True)  # long next to the arrivals' spread on a busy machine
    with running_server(models=("sleep",), detectors={"sleep": [model]}, max_batch=8, batch_wait_ms=50) as server, \
            stub_for(server) as stub:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda _: stub.Infer(infer_request(front, model="sleep"), timeout=30), range(8)))
    assert sum(model.batch_sizes) == 8
    assert len(model.batch_sizes) <= 3, model.batch_sizes  # 8 requests in far fewer model calls
    assert max(r.timings.batch_size for r in replies) > 1


def test_list_models_and_ping(stub, front):
    stub.Infer(infer_request(front, model="noop"), timeout=5)
    models = {m.name: m for m in stub.ListModels(pb.ListModelsRequest(), timeout=5).models}
    assert set(models) == {"noop", HOG}
    hog = models[HOG]
    assert hog.family == "hog" and list(hog.classes) == [pb.OBJECT_CLASS_PEDESTRIAN] and not hog.untrained
    assert models["noop"].runtime_samples >= 1 and models["noop"].runtime_p99_ms >= models["noop"].runtime_p50_ms
    before = unix_us()
    pong = stub.Ping(pb.PingRequest(client_time_unix_us=12345), timeout=5)
    assert pong.client_time_unix_us == 12345 and before <= pong.server_time_unix_us <= unix_us()


def test_untrained_torch_model_is_reported_untrained(front):
    name = "ssdlite320_mobilenet_v3_large"
    cfg = ServerConfig(models=(name,), port=0, insecure=True, allow_untrained=True, device="cpu")
    with running_server(cfg) as server, stub_for(server) as stub:
        reply = stub.Infer(infer_request(front, model=name), timeout=60)
        assert reply.untrained
        (info,) = stub.ListModels(pb.ListModelsRequest(), timeout=5).models
        assert info.untrained and (info.input_size.width, info.input_size.height) == (320, 320)


def test_health_and_reflection_answer(hog_server):
    with grpc.insecure_channel(f"127.0.0.1:{hog_server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "carlink.v1.Inference"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        (reply,) = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                  timeout=5))
        names = {s.name for s in reply.list_services_response.service}
        assert {"carlink.v1.Inference", "grpc.health.v1.Health"} <= names
        (desc,) = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="carlink.v1.InferRequest")]), timeout=5))
        assert desc.file_descriptor_response.file_descriptor_proto


def test_prometheus_metrics_are_exposed(hog_server, stub, front):
    stub.Infer(infer_request(front), timeout=5)
    _code(stub.Infer, infer_request(b"junk"), timeout=5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{hog_server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'carlink_cloud_requests_total{code="OK",model="noop"}' in text
    assert 'carlink_cloud_requests_total{code="INVALID_ARGUMENT",model="noop"}' in text
    for family in ("carlink_cloud_request_latency_seconds_bucket", "carlink_cloud_queue_wait_seconds_bucket",
                   "carlink_cloud_inference_seconds_bucket", "carlink_cloud_decode_seconds_bucket",
                   "carlink_cloud_in_flight"):
        assert family in text


def test_stop_reports_not_serving_and_refuses_new_calls(front):
    slow = SleepDetector(1.0)
    server_cm = running_server(models=("sleep",), detectors={"sleep": [slow]})
    server = server_cm.__enter__()
    try:
        with stub_for(server) as stub:
            with ThreadPoolExecutor(1) as pool:
                inflight = pool.submit(stub.Infer, infer_request(front, model="sleep"), timeout=30)
                assert wait_for(lambda: slow.calls == 1)  # running when the stop begins
                stopper = threading.Thread(target=server.stop, kwargs={"grace": 5.0})
                stopper.start()
                time.sleep(0.1)
                assert inflight.result().decoded_size.width == 1920  # in flight: finished
                code, _ = _code(stub.Infer, infer_request(front, model="sleep"), timeout=2)
                assert code == grpc.StatusCode.UNAVAILABLE
                stopper.join(5)
    finally:
        server_cm.__exit__(None, None, None)
