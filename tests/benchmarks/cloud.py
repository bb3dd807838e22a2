"""Benchmark of the cloud inference server on loopback.

Run: python tests/benchmarks/cloud.py [--data DIR] [--quick] [--device cpu|cuda|auto]

The server runs in its own process (spawned), the clients in this one, so client and server do
not share a GIL. Measures:
  1. Infer round trip of a ~300 KB JPEG with the no-op model (serving path: transport, admission,
     header checks, queue; "noop" decodes no pixels) and with a no-op that does decode ("noop-decode").
  2. Per model: decode and inference time for the real 1920x1280 Waymo FRONT frame (server timings).
     torchvision models run with UNTRAINED (random) weights: fine for timing, not for accuracy.
  3. Throughput with 1, 4 and 16 concurrent clients for one HOG variant.
  4. Throughput of one torch model with and without dynamic batching (16 clients).
Ends with one summary line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchlib import NOOP_DECODE, ServerProcess, default_data_dir, stub as _stub

HOG_THROUGHPUT = "hog-default-fast"
TORCH_BATCH = "ssdlite320_mobilenet_v3_large"
HOGS = ["hog-default-fast", "hog-default", "hog-default-accurate", "hog-daimler-fast", "hog-daimler",
        "hog-daimler-accurate"]
TORCHES = ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn",
           "fasterrcnn_resnet50_fpn_v2"]


def _request(payload: bytes, model: str):
    from carlink.proto import inference_pb2 as pb

    return pb.InferRequest(task="front_det", model=model, encoding=pb.ENCODING_JPEG, payload=payload)


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q))


def jpeg_near(image: np.ndarray, target: int) -> bytes:
    """The JPEG of ``image`` whose size is closest to ``target`` bytes over qualities 30..100."""
    import cv2

    best = None
    for q in range(30, 101, 2):
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()
        if best is None or abs(len(data) - target) < abs(len(best) - target):
            best = data
    return best


def round_trips(port: int, payload: bytes, model: str, n: int) -> dict:
    channel, stub = _stub(port)
    with channel:
        req = _request(payload, model)
        for _ in range(20):  # warm-up: connection, allocator, caches
            stub.Infer(req, timeout=10)
        rtt, server_total, decode = [], [], []
        for _ in range(n):
            t = time.perf_counter()
            reply = stub.Infer(req, timeout=10)
            rtt.append((time.perf_counter() - t) * 1e3)
            server_total.append(reply.timings.total_ms)
            decode.append(reply.timings.decode_ms)
    return {"p50": _pct(rtt, 50), "p90": _pct(rtt, 90), "p99": _pct(rtt, 99),
            "server_p50": _pct(server_total, 50), "decode_p50": _pct(decode, 50)}


def per_model(port: int, payload: bytes, model: str, reps: int) -> dict:
    channel, stub = _stub(port)
    with channel:
        req = _request(payload, model)
        first = stub.Infer(req, timeout=600)  # warm-up (lazy init, allocator)
        dec, inf, rtt = [], [], []
        for _ in range(reps):
            t = time.perf_counter()
            reply = stub.Infer(req, timeout=600)
            rtt.append((time.perf_counter() - t) * 1e3)
            dec.append(reply.timings.decode_ms)
            inf.append(reply.timings.inference_ms)
    return {"decode": statistics.median(dec), "inference": statistics.median(inf), "rtt": statistics.median(rtt),
            "detections": len(first.detections), "untrained": first.untrained}


def throughput(port: int, payload: bytes, model: str, clients: int, seconds: float) -> dict:
    """Closed loop: each client sends its next request when the previous answer arrives."""
    channel, stub = _stub(port)
    req = _request(payload, model)
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    batches: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            reply = stub.Infer(req, timeout=120)
            with lock:
                lat.append((time.perf_counter() - t) * 1e3)
                batches.append(reply.timings.batch_size)

    with channel:
        stub.Infer(req, timeout=120)  # warm-up
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for f in [pool.submit(client) for _ in range(clients)]:
                f.result()
        elapsed = time.perf_counter() - start
    return {"rps": len(lat) / elapsed, "p50": _pct(lat, 50), "p99": _pct(lat, 99), "batch": float(np.mean(batches))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, skip the two large torch models")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="device of torch models")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads in the server")
    args = parser.parse_args(argv)

    import cv2

    from carlink.datasets.waymo import read_waymo_frames

    frame = next(iter(read_waymo_frames(args.data / "waymo" / "v1_frames" / "pvps_data_one_frame.tfrecord")))
    front = next(im for im in frame.images if im.camera.name == "FRONT")
    image = cv2.imdecode(np.frombuffer(front.data, np.uint8), cv2.IMREAD_COLOR)
    jpeg300 = jpeg_near(image, 300_000)
    small = cv2.imencode(".jpg", cv2.resize(image, (640, 427), interpolation=cv2.INTER_AREA),
                         [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    n_rtt = 200 if args.quick else 500
    secs = 3.0 if args.quick else 6.0
    print(f"cloud benchmark: {os.cpu_count()} CPUs, torch threads {args.torch_threads}, torch device {args.device}; "
          f"FRONT {image.shape[1]}x{image.shape[0]} ({len(front.data)} B), test JPEG {len(jpeg300)} B")

    # 1. Round trip with the no-op model.
    with ServerProcess(noop_decode=True, models=("noop",)) as port:
        noop = round_trips(port, jpeg300, "noop", n_rtt)
        noop_dec = round_trips(port, jpeg300, NOOP_DECODE, n_rtt // 2)
    print("\n1. Infer round trip, ~300 KB JPEG, loopback (ms)")
    print(f"{'model':<14}{'p50':>8}{'p90':>8}{'p99':>8}{'server p50':>12}{'decode p50':>12}")
    for name, r in (("noop", noop), ("noop-decode", noop_dec)):
        print(f"{name:<14}{r['p50']:8.2f}{r['p90']:8.2f}{r['p99']:8.2f}{r['server_p50']:12.2f}{r['decode_p50']:12.2f}")
    print(f"target: noop p50 <= 3 ms -> {'met' if noop['p50'] <= 3.0 else 'NOT met'}")

    # 2. Per model, real 1920x1280 frame.
    torches = TORCHES[:2] if args.quick else TORCHES
    print("\n2. Per model on the real FRONT frame 1920x1280 (server timings, median ms)")
    print(f"{'model':<40}{'decode':>9}{'infer':>10}{'rtt':>10}{'dets':>6}  weights")
    rows = {}
    with ServerProcess(models=tuple(HOGS + torches), allow_untrained=True, device=args.device,
                       torch_threads=args.torch_threads) as port:
        for model in HOGS + torches:
            slow = model.endswith("accurate") or model in TORCHES[2:]
            r = per_model(port, front.data, model, reps=1 if (slow or args.quick) else 3)
            rows[model] = r
            print(f"{model:<40}{r['decode']:9.1f}{r['inference']:10.1f}{r['rtt']:10.1f}{r['detections']:6d}  "
                  f"{'UNTRAINED (random init)' if r['untrained'] else 'pretrained'}")

    # 3. HOG throughput with concurrent clients (as many model workers as CPUs).
    workers = os.cpu_count() or 1
    print(f"\n3. Throughput, {HOG_THROUGHPUT}, FRONT 1920x1280 JPEG, {workers} model workers, {secs:.0f} s per row")
    print(f"{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    hog_rps = {}
    with ServerProcess(models=(HOG_THROUGHPUT,), workers_per_model=workers) as port:
        for clients in (1, 4, 16):
            r = throughput(port, front.data, HOG_THROUGHPUT, clients, secs)
            hog_rps[clients] = r["rps"]
            print(f"{clients:8d}{r['rps']:9.2f}{r['p50']:9.1f}{r['p99']:9.1f}")

    # 4. Torch model with and without dynamic batching.
    print(f"\n4. Throughput, {TORCH_BATCH} (UNTRAINED weights), 640x427 JPEG, 16 clients, device {args.device}")
    print(f"{'max_batch':>10}{'wait ms':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'mean batch':>12}")
    batch_rps = {}
    for max_batch, wait in ((1, 0.0), (8, 5.0)):
        with ServerProcess(models=(TORCH_BATCH,), allow_untrained=True, device=args.device, max_batch=max_batch,
                           batch_wait_ms=wait, torch_threads=args.torch_threads) as port:
            r = throughput(port, small, TORCH_BATCH, 16, secs)
            batch_rps[max_batch] = r["rps"]
            print(f"{max_batch:10d}{wait:9.1f}{r['rps']:9.2f}{r['p50']:9.1f}{r['p99']:9.1f}{r['batch']:12.2f}")
    ratio = batch_rps[8] / batch_rps[1]
    print(f"batching speed-up (max_batch 8 vs 1): x{ratio:.2f}")

    print(f"\nSUMMARY cloud: noop RTT p50 {noop['p50']:.2f} ms (target <= 3: {'met' if noop['p50'] <= 3 else 'NOT met'}), "
          f"noop+decode p50 {noop_dec['p50']:.2f} ms; FRONT decode {rows[HOGS[0]]['decode']:.1f} ms; "
          f"{HOG_THROUGHPUT} {hog_rps[1]:.1f}/{hog_rps[4]:.1f}/{hog_rps[16]:.1f} req/s at 1/4/16 clients; "
          f"{TORCH_BATCH} {batch_rps[1]:.1f} -> {batch_rps[8]:.1f} req/s with batching (x{ratio:.2f}, {args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
