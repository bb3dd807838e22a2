"""Trace type and readers: every real trace against the figures of shared/data/README.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carlink.datasets.errors import NonMonotonicTimestampsError, TraceError, UnknownTraceFormatError
from carlink.datasets.trace_readers import detect_trace_format, load_trace
from carlink.datasets.traces import PACKET_BITS, Trace

M = 1e6
# README section 3: duration s, mean, p5, p50, p95 (Mbit/s, 1 s bins), share of zero seconds.
# None where the README gives no figure. Values are as printed (rounded to 2 decimals), so each is
# checked to within 1 % or half a unit of its last printed digit, whichever is larger.
README = {
    "mahimahi/ATT-LTE-driving.up": ("mahimahi", 1011.6, 0.83, 0.00, 1.04, 1.19, 0.093),
    "mahimahi/ATT-LTE-driving.down": ("mahimahi", 786.1, 5.17, 0.66, 5.40, 9.53, 0.0),
    "mahimahi/ATT-LTE-driving-2016.up": ("mahimahi", 120.0, 1.91, 0.02, 1.56, 4.78, 0.033),
    "mahimahi/ATT-LTE-driving-2016.down": ("mahimahi", 120.0, 4.56, 0.35, 3.73, 11.08, 0.0),
    "mahimahi/TMobile-LTE-driving.down": ("mahimahi", 474.6, 12.77, 2.90, 9.94, 30.51, 0.0),
    "mahimahi/TMobile-LTE-short.up": ("mahimahi", 140.0, 13.32, 2.48, 11.24, 27.52, 0.0),
    "nyu_mets/Car_1.csv": ("mbps-csv", 1264, 13.21, 2.10, 12.55, 24.30, 0.006),
}


def close(got: float, want: float, half_unit: float) -> bool:
    return abs(got - want) <= max(0.01 * abs(want), half_unit)


def test_every_trace_file_is_covered(bandwidth_dir: Path) -> None:
    files = {str(p.relative_to(bandwidth_dir)) for p in bandwidth_dir.rglob("*") if p.is_file()}
    covered = set(README) | {
        "uccmisl_5g/Download_Driving_B_2019.12.16_14.23.32.csv", "uccmisl_5g/5G-production-dataset.zip",
        "nuwins_5g_uplink/driving/5g/throughput.list", "nuwins_5g_uplink/driving/5g/ping.list"}
    assert files == covered


@pytest.mark.parametrize("rel", sorted(README))
def test_mahimahi_and_csv_match_readme(bandwidth_dir: Path, rel: str) -> None:
    fmt, duration, mean, p5, p50, p95, zero = README[rel]
    path = bandwidth_dir / rel
    assert detect_trace_format(path.read_text(), str(path)) == fmt
    trace = load_trace(path)
    s = trace.stats()
    # README durations of mahimahi traces are last - first timestamp; our period is the last
    # timestamp (mm-link loops there), which differs by the first timestamp (831 ms at most).
    assert close(s.duration_s, duration, 0.05)
    assert close(s.mean_bps / M, mean, 0.005)
    assert close(s.p5_bps / M, p5, 0.005)
    assert close(s.p50_bps / M, p50, 0.005)
    assert close(s.p95_bps / M, p95, 0.005)
    assert close(s.zero_share, zero, 0.0005)
    assert trace.opportunities_ms.dtype == np.int64 and np.all(np.diff(trace.opportunities_ms) >= 0)


def test_mahimahi_packet_counts(bandwidth_dir: Path) -> None:
    assert len(load_trace(bandwidth_dir / "mahimahi/ATT-LTE-driving.up")) == 70_336
    assert len(load_trace(bandwidth_dir / "mahimahi/TMobile-LTE-driving.down")) == 505_078


def test_irish_5g_csv_matches_readme(bandwidth_dir: Path) -> None:
    path = bandwidth_dir / "uccmisl_5g/Download_Driving_B_2019.12.16_14.23.32.csv"
    trace = load_trace(path)
    s = trace.stats()
    assert s.duration_s == 2887  # one row = one second (timestamps repeat; see trace_readers)
    assert close(s.mean_bps / M, 57.1, 0.05)
    assert s.p5_bps == 0
    assert close(s.p50_bps / M, 19.0, 0.05)
    assert close(s.p95_bps / M, 242.8, 0.05)
    assert trace.rtt is not None and len(trace.rtt) > 100 and 50 < s.rtt_p50_ms < 150
    # The same session read straight out of the original zip archive gives the same trace.
    zipped = load_trace(f"{bandwidth_dir}/uccmisl_5g/5G-production-dataset.zip::"
                        "5G-production-dataset/Download/Driving/B_2019.12.16_14.23.32.csv")
    assert np.array_equal(zipped.opportunities_ms, trace.opportunities_ms)


def test_nuwins_uplink_matches_readme_loosely(bandwidth_dir: Path) -> None:
    trace = load_trace(bandwidth_dir / "nuwins_5g_uplink/driving/5g/throughput.list")
    assert trace.source.startswith("nuwins:")
    # The README's "about" figures are over the raw 100 ms samples: compare at that resolution,
    # loosely (3 %), since a 100 ms sample of a few Mbit/s is only a few dozen packets.
    s = trace.stats(window_ms=100)
    assert close(s.duration_s, 2918, 1)
    assert close(s.mean_bps / M, 31, 0.5)
    assert s.p5_bps == 0
    assert abs(s.p50_bps / M - 5.6) <= 0.03 * 5.6
    assert abs(s.p95_bps / M - 126) <= 0.03 * 126
    assert s.zero_share > 0.1  # "frequent zero stretches"
    with pytest.raises(NonMonotonicTimestampsError, match="line 5: run 1: time 102.35 s"):
        load_trace(bandwidth_dir / "nuwins_5g_uplink/driving/5g/throughput.list", series="B")
    b = load_trace(bandwidth_dir / "nuwins_5g_uplink/driving/5g/throughput.list", series="B",
                   strict_times=False)  # series B's real times go backwards in places
    assert b.name.endswith(":B") and b.mean_bps < trace.mean_bps
    run1 = load_trace(bandwidth_dir / "nuwins_5g_uplink/driving/5g/throughput.list", runs=(1,))
    assert run1.period_ms == 3550 * 100


def test_nuwins_ping_is_an_rtt_series(bandwidth_dir: Path) -> None:
    trace = load_trace(bandwidth_dir / "nuwins_5g_uplink/driving/5g/ping.list")
    s = trace.stats()
    assert len(trace) == 0 and trace.rtt is not None
    assert abs(s.rtt_p50_ms - 32) <= 1.5 and abs(s.rtt_p95_ms - 50) <= 2.5  # README: about 32 / 50


# -- the Trace type -------------------------------------------------------------------------------

def brute_count(opps: np.ndarray, period: int, t0: float, t1: float) -> int:
    loops = int(t1 // period) + 2
    times = (opps[None, :] + period * np.arange(loops)[:, None]).ravel()
    return int(np.count_nonzero((times >= t0) & (times < t1)))


@settings(max_examples=150, deadline=None)
@given(
    opps=st.lists(st.integers(0, 50), min_size=1, max_size=30),
    extra_period=st.integers(0, 20),
    t0=st.floats(0, 400, allow_nan=False), dt=st.floats(0, 400, allow_nan=False),
)
def test_count_and_list_between_agree_with_brute_force(opps, extra_period, t0, dt) -> None:
    arr = np.sort(np.array(opps, dtype=np.int64))
    period = max(int(arr[-1]), 1) + extra_period
    trace = Trace(arr, period)
    want = brute_count(arr, period, t0, t0 + dt)
    assert trace.count_between(t0, t0 + dt) == want
    listed = trace.opportunities_between(t0, t0 + dt)
    assert len(listed) == want and np.all(np.diff(listed) >= 0)
    assert np.all((listed >= t0) & (listed < t0 + dt))


def test_count_between_at_a_subnormal_start_counts_nothing_before_it() -> None:
    # Found by the property test above under load: t / P underflowed to 0 and counted -1 loops.
    trace = Trace(np.array([2], dtype=np.int64), 2)  # one opportunity at the period: 2, 4, 6...
    assert trace.count_between(5e-324, 1.0) == 0
    assert trace.count_between(5e-324, 2.0) == 0 and trace.count_between(5e-324, 2.5) == 1


def test_from_rates_carries_fractions_and_spreads_evenly() -> None:
    trace = Trace.from_rates(np.array([3.5, 0.0, 1.5, 2.0]) * PACKET_BITS, 1000)
    assert trace.period_ms == 4000
    assert trace.opportunities_ms.tolist() == [166, 500, 833, 2250, 2750, 3250, 3750]
    assert trace.throughput_bps().tolist() == [3 * PACKET_BITS, 0, 2 * PACKET_BITS, 2 * PACKET_BITS]


def test_slice_scale_loop_and_mahimahi_round_trip(tmp_path: Path, bandwidth_dir: Path) -> None:
    trace = load_trace(bandwidth_dir / "mahimahi/ATT-LTE-driving-2016.up")
    part = trace.slice(10, 20)
    assert part.period_ms == 10_000
    assert len(part) == trace.count_between(10_000, 20_000)
    assert np.array_equal(part.throughput_bps(), trace.throughput_bps()[10:20])
    wrapped = trace.slice(110, 130)  # runs past the 120.002 s period: loops
    assert len(wrapped) == trace.count_between(110_000, 130_000)
    doubled = trace.scaled(2.0)
    assert len(doubled) == 2 * len(trace)
    assert np.allclose(doubled.throughput_bps(), 2 * trace.throughput_bps())
    half = trace.scaled(0.5)
    assert len(half) == len(trace) // 2
    assert abs(half.mean_bps - trace.mean_bps / 2) <= PACKET_BITS / trace.duration_s
    looped = trace.looped(300_000)
    assert looped.period_ms == 300_000 and len(looped) == trace.count_between(0, 300_000)
    out = trace.write_mahimahi(tmp_path / "copy.up")
    assert out.read_text() == (bandwidth_dir / "mahimahi/ATT-LTE-driving-2016.up").read_text()
    again = load_trace(out)
    assert np.array_equal(again.opportunities_ms, trace.opportunities_ms) and again.period_ms == trace.period_ms


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sorted"):
        Trace(np.array([5, 3]), 10)
    with pytest.raises(ValueError, match="beyond the period"):
        Trace(np.array([5, 30]), 10)
    with pytest.raises(ValueError, match="positive finite"):
        Trace(np.array([5]), 10).scaled(0)


# -- bad trace files ------------------------------------------------------------------------------

def test_unknown_format(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(UnknownTraceFormatError, match=r"README.md: unknown trace format; line 1 is"):
        load_trace(data_dir / "README.md")
    with pytest.raises(UnknownTraceFormatError, match="unknown trace format 'pcap'"):
        load_trace(data_dir / "bandwidth/nyu_mets/Car_1.csv", format="pcap")
    with pytest.raises(UnknownTraceFormatError, match="not a text trace file"):
        load_trace(data_dir / "waymo/v1_frames/mmdet3d_val.tfrecord")
    with pytest.raises(TraceError, match="name one as"):
        load_trace(data_dir / "bandwidth/uccmisl_5g/5G-production-dataset.zip")


def test_non_monotonic_mahimahi(tmp_path: Path, bandwidth_dir: Path) -> None:
    lines = (bandwidth_dir / "mahimahi/ATT-LTE-driving-2016.up").read_text().splitlines()
    lines[100], lines[101] = lines[101], str(int(lines[101]) + 5_000)  # line 102 jumps ahead
    bad = tmp_path / "bad.up"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(NonMonotonicTimestampsError, match=r"bad.up: line 103: timestamp \d+ ms is earlier"):
        load_trace(bad)


def test_non_monotonic_gnettrack(tmp_path: Path, bandwidth_dir: Path) -> None:
    lines = (bandwidth_dir / "uccmisl_5g/Download_Driving_B_2019.12.16_14.23.32.csv").read_text().splitlines()
    lines[50] = lines[50].replace("2019.12.16_14.", "2019.12.16_13.", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(NonMonotonicTimestampsError, match="bad.csv: line 51: timestamp 2019.12.16_13.24.22 is earlier"):
        load_trace(bad)


def test_non_monotonic_nuwins_and_bad_number(tmp_path: Path, bandwidth_dir: Path) -> None:
    lines = (bandwidth_dir / "nuwins_5g_uplink/driving/5g/throughput.list").read_text().splitlines()
    times = lines[2].split(",")
    times[5] = "1.0"
    bad = tmp_path / "throughput.list"
    bad.write_text("\n".join([*lines[:2], ",".join(times), *lines[3:]]) + "\n")
    with pytest.raises(NonMonotonicTimestampsError, match="throughput.list: line 3: run 1: time 1.0 s"):
        load_trace(bad)
    csv_bad = tmp_path / "car.csv"
    csv_bad.write_text("1.5,Mbits/sec\n2.0,Mbits/sec\nfast,Mbits/sec\n")
    with pytest.raises(TraceError, match="car.csv: line 3"):
        load_trace(csv_bad, format="mbps-csv")
