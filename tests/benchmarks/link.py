"""Link emulator benchmark: core speed (packets/s) and proxy accuracy/CPU on real traces.

Run: CARLINK_TEST_DATA=../shared/data python tests/benchmarks/link.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import resource
import socket
import threading
import time

from carlink.datasets.trace_readers import load_trace
from carlink.replay.link import MTU, TraceLink
from carlink.replay.link_proxy import LinkProxy
from benchlib import data_root

DATA = data_root()
TRACES = ["ATT-LTE-driving-2016.up", "TMobile-LTE-short.up"]


def core_rate(trace_name: str, packets: int = 200_000) -> float:
    link = TraceLink(load_trace(DATA / "bandwidth" / "mahimahi" / trace_name), delay=20.0)
    t0 = time.perf_counter()
    for i in range(packets):
        link.enqueue(i * 0.05, MTU)
    return packets / (time.perf_counter() - t0)


def proxy_run(trace_name: str, seconds: float) -> tuple[float, float, float]:
    """(expected Mbit/s, measured Mbit/s, proxy-process CPU share) over one window."""
    trace = load_trace(DATA / "bandwidth" / "mahimahi" / trace_name)
    link = TraceLink(trace, delay=20.0, offset_ms=10_000)
    srv = socket.create_server(("127.0.0.1", 0))
    arrivals: list[tuple[float, int]] = []

    def sink() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(1 << 20):
                arrivals.append((time.monotonic(), len(data)))

    stop = threading.Event()

    def saturate(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as c:
            try:
                while not stop.is_set():
                    c.sendall(bytes(65536))
            except OSError:
                pass

    threading.Thread(target=sink, daemon=True).start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with LinkProxy(("127.0.0.1", srv.getsockname()[1]), link) as proxy:
        threading.Thread(target=saturate, args=(proxy.port,), daemon=True).start()
        t0 = proxy.origin + (300 + 20) / 1000
        t1 = t0 + seconds
        time.sleep(t1 + 0.05 - time.monotonic())
        stop.set()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    srv.close()
    expected = link.capacity_bytes(300, 300 + seconds * 1000) * 8 / seconds / 1e6
    got = sum(n for t, n in arrivals if t0 < t <= t1) * 8 / seconds / 1e6
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / (seconds + 0.4)
    return expected, got, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0, help="proxy window per trace (s)")
    args = ap.parse_args()
    rate = core_rate(TRACES[1])
    print(f"core: {rate:,.0f} packets/s enqueued ({rate * MTU * 8 / 1e6:,.0f} Mbit/s of 1500-byte packets)")
    print(f"{'trace':<28} {'capacity Mbit/s':>15} {'proxy Mbit/s':>12} {'ratio':>7} {'CPU (all threads)':>18}")
    ratios = []
    for name in TRACES:
        exp, got, cpu = proxy_run(name, args.seconds)
        ratios.append(got / exp)
        print(f"{name:<28} {exp:>15.3f} {got:>12.3f} {got / exp:>7.4f} {cpu:>17.0%}")
    print(f"SUMMARY core_packets_per_s={rate:.0f} proxy_ratio_min={min(ratios):.4f} "
          f"proxy_ratio_max={max(ratios):.4f}")


if __name__ == "__main__":
    main()
