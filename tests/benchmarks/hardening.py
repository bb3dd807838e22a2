"""Memory bounds of issue 15 (hardening), measured on real processes.

Run: python tests/benchmarks/hardening.py [server|trace|all] [--trace FILE]

1. ``server``: the cloud server (its own process, default limits, a model that decodes pixels)
   receives 40 concurrent valid 7000x7000 JPEGs; prints the server's peak RSS (VmHWM), how the
   calls ended and how long they took.
2. ``trace``: ``carlink trace info`` on a 50 MB real-format mahimahi trace of 6.8 M lines (the
   real TMobile-LTE-driving.down looped, written to /tmp when missing); prints wall time and
   peak RSS of the command (a subprocess).
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchlib import NOOP_DECODE, ServerProcess, data_root, stub

TRACE_LINES = 6_800_000
DEFAULT_TRACE = Path("/tmp/hardening_trace_50mb.down")
BIG_SIDE = 7000
CLIENTS = 40


# -- 1. server peak RSS -----------------------------------------------------------------------

def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def big_jpeg(side: int = BIG_SIDE) -> bytes:
    """A valid side x side JPEG of smooth content (about 750 KB, as in the issue's 30 MB / 40)."""
    import cv2

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(side // 1024, side // 1024, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_LINEAR)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 25])[1].tobytes()


def raw_request(payload_bytes: int = 16 * 1024 * 1024 - 1024):
    """The largest raw BGR image the default --max-payload-bytes lets through (about 5.6 MP)."""
    from carlink.proto import inference_pb2 as pb

    side = math.isqrt(payload_bytes // 3)
    return pb.InferRequest(task="front_det", model=NOOP_DECODE, encoding=pb.ENCODING_RAW_BGR,
                           payload=bytes(side * side * 3), payload_size=pb.ImageSize(width=side, height=side))


def server_peak_rss(kind: str = "jpeg", clients: int = CLIENTS) -> dict:
    """Peak RSS of a default server under ``clients`` concurrent calls of 7000x7000 JPEGs ("jpeg")
    or of raw images as large as the payload limit allows ("raw": the payload bytes dominate)."""
    from carlink.proto import inference_pb2 as pb

    if kind == "raw":
        req = raw_request()
    else:
        req = pb.InferRequest(task="front_det", model=NOOP_DECODE, encoding=pb.ENCODING_JPEG, payload=big_jpeg())
    payload = req.payload
    from carlink.cloud.config import ServerConfig

    default_limit = ServerConfig.model_fields["max_concurrency"].default  # the server's default limits
    server = ServerProcess(load_models=False, noop_decode=True, models=(NOOP_DECODE,), max_concurrency=default_limit)
    with server as port:
        base_kib = _vm_hwm_kib(server.pid)
        channel, infer = stub(port)
        codes, elapsed = _concurrent_calls(infer, req, clients)
        peak_kib = _vm_hwm_kib(server.pid)
        channel.close()
    return {"kind": kind, "clients": clients, "payload_bytes": len(payload), "sent_mb": clients * len(payload) / 1e6,
            "base_mib": base_kib / 1024,
            "peak_mib": peak_kib / 1024, "codes": dict(codes), "seconds": elapsed}


def _concurrent_calls(infer, req, clients: int) -> tuple[collections.Counter, float]:
    """``clients`` threads call at once: (status codes, seconds until the last one returned)."""
    import grpc

    codes: collections.Counter = collections.Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client() -> None:
        start.wait()
        try:
            infer.Infer(req, timeout=300)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        with lock:
            codes[code] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes, time.perf_counter() - t0


# -- 2. trace info ------------------------------------------------------------------------------

def make_big_trace(path: Path, lines: int = TRACE_LINES) -> Path:
    """The real TMobile-LTE-driving.down repeated (each copy shifted by its period) to ``lines``."""
    src = np.loadtxt(data_root() / "bandwidth" / "mahimahi" / "TMobile-LTE-driving.down", dtype=np.int64)
    period = int(src[-1])
    parts, n, k = [], 0, 0
    while n < lines:
        take = src[: lines - n]
        parts.append(take + k * period)
        n, k = n + take.size, k + 1
    path.write_text("\n".join(map(str, np.concatenate(parts).tolist())) + "\n")
    return path


def trace_info_cost(path: Path, runs: int = 3) -> dict:
    if not path.exists():
        # Made in a child: a fork of this process after making it (~800 MB of lists) would count
        # those pages in the measured command's peak RSS until its exec.
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
                        "import hardening; hardening.make_big_trace(Path(sys.argv[2]))",
                        str(Path(__file__).parent), str(path)], check=True)
    best, peak_kib = None, 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "carlink.cli", "trace", "info", str(path)],
                                stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        secs = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"carlink trace info {path} failed (exit {proc.returncode})")
        best = secs if best is None else min(best, secs)
        peak_kib = max(peak_kib, usage.ru_maxrss)  # KiB on Linux
    return {"bytes": path.stat().st_size, "lines": TRACE_LINES, "best_s": best, "peak_mib": peak_kib / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=("server", "server-raw", "trace", "all"))
    parser.add_argument("--clients", type=int, default=CLIENTS, help="concurrent calls (server cases)")
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="the 50 MB trace (made when missing)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    summary = []
    if args.what in ("trace", "all"):
        r = trace_info_cost(args.trace)
        summary += [f"trace_info_s={r['best_s']:.2f}", f"trace_info_peak_mib={r['peak_mib']:.0f}"]
        print(f"trace info: {r['bytes'] / 1e6:.1f} MB, {r['lines']} lines: best of 3 {r['best_s']:.2f} s, "
              f"peak RSS {r['peak_mib']:.0f} MiB")
    server_cases = (("server", "jpeg", f"{BIG_SIDE}x{BIG_SIDE} JPEGs"),
                    ("server-raw", "raw", "raw images at the payload limit"))
    for what, kind, described in server_cases:
        if args.what not in (what, "all"):
            continue
        r = server_peak_rss(kind, args.clients)
        summary.append(f"server_{kind}_peak_mib={r['peak_mib']:.0f}")
        print(f"server: {r['clients']} concurrent {described} ({r['payload_bytes']} B each, "
              f"{r['sent_mb']:.1f} MB in all): peak RSS {r['peak_mib']:.0f} MiB (after start {r['base_mib']:.0f} MiB), "
              f"outcomes {r['codes']}, {r['seconds']:.1f} s")
    print("SUMMARY hardening " + " ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
