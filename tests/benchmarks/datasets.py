"""Benchmark of carlink.datasets: TFRecord read + CRC, Frame parse, label iteration, trace loading.

Run: ``python tests/benchmarks/datasets.py`` (data from CARLINK_TEST_DATA, else ../shared/data).
Target: reading and CRC-checking the 2.1 MB real Frame in a median under 1 ms.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable

import cv2

from carlink.datasets import frames as frames_module
from carlink.datasets.tfrecord import TFRecordReader
from carlink.datasets.trace_readers import load_trace
from carlink.datasets.waymo import read_waymo_frames
from benchlib import data_root


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    fn()  # warm the page cache and imports
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main() -> int:
    root = data_root()
    frame_file = root / "waymo/v1_frames/pvps_data_one_frame.tfrecord"
    size_mb = frame_file.stat().st_size / 1e6
    rows: list[tuple[str, float, float, str]] = []

    def read_crc() -> int:
        return sum(len(r.data) for r in TFRecordReader(frame_file))

    def read_no_crc() -> int:
        return sum(len(r.data) for r in TFRecordReader(frame_file, verify_crc=False))

    def read_parse() -> int:
        return sum(len(f.images) for f in read_waymo_frames(frame_file))

    decodes = [0]
    real_imdecode = cv2.imdecode

    def counting(*a, **k):
        decodes[0] += 1
        return real_imdecode(*a, **k)

    def labels_only() -> int:
        return sum(len(f.all_labels()) for f in read_waymo_frames(frame_file))

    def decode_all() -> int:
        return sum(im.decode().size for f in read_waymo_frames(frame_file) for im in f.images)

    med, p90 = median_ms(read_crc, 300)
    rows.append(("read + CRC32C, 2.1 MB Frame", med, p90, f"{size_mb / (med / 1e3):.0f} MB/s"))
    crc_median = med
    med, p90 = median_ms(read_no_crc, 300)
    rows.append(("read, CRC off (baseline)", med, p90, f"CRC costs {crc_median / med:.2f}x"))
    med, p90 = median_ms(read_parse, 100)
    rows.append(("read + CRC + parse -> Frame", med, p90, "no image decoded"))
    parse_median = med
    cv2.imdecode = frames_module.cv2.imdecode = counting
    try:
        med, p90 = median_ms(labels_only, 100)
        rows.append(("iterate 66 labels", med, p90, f"image decodes: {decodes[0]}"))
        label_decodes = decodes[0]
    finally:
        cv2.imdecode = frames_module.cv2.imdecode = real_imdecode
    med, p90 = median_ms(decode_all, 5)
    rows.append(("... and decode all 5 JPEGs (cv2)", med, p90, f"{med / parse_median:.0f}x the parse"))

    trace_files = {
        "mahimahi TMobile-LTE-driving.down": root / "bandwidth/mahimahi/TMobile-LTE-driving.down",
        "mbps-csv Car_1.csv": root / "bandwidth/nyu_mets/Car_1.csv",
        "nuwins throughput.list": root / "bandwidth/nuwins_5g_uplink/driving/5g/throughput.list",
        "gnettrack-csv Irish 5G": root / "bandwidth/uccmisl_5g/Download_Driving_B_2019.12.16_14.23.32.csv",
    }
    trace_total = 0.0
    for label, path in trace_files.items():
        med, p90 = median_ms(lambda p=path: load_trace(p), 3)
        trace_total += med
        rows.append((f"load trace: {label}", med, p90, f"{len(load_trace(path)):,} opportunities"))
    trace = load_trace(trace_files["mahimahi TMobile-LTE-driving.down"])
    t = [0.0]

    def query() -> int:
        t[0] += 7.3
        return trace.count_between(t[0], t[0] + 5.0)

    med, p90 = median_ms(lambda: [query() for _ in range(1000)], 20)
    rows.append(("count_between (looping), per call", med, p90, "x1000 calls per timing; shown /1000"))
    rows[-1] = (rows[-1][0], med / 1000, p90 / 1000, rows[-1][3])
    query_us = med

    width = max(len(r[0]) for r in rows)
    print(f"{'operation':<{width}}  {'median ms':>10}  {'p90 ms':>9}  note")
    for name, med, p90, note in rows:
        print(f"{name:<{width}}  {med:>10.3f}  {p90:>9.3f}  {note}")
    print(f"SUMMARY read+crc_ms={crc_median:.3f} (target <1: {'PASS' if crc_median < 1 else 'FAIL'}) "
          f"parse_ms={parse_median:.3f} label_iter_decodes={label_decodes} "
          f"trace_load_total_ms={trace_total:.0f} count_between_us={query_us:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
