"""Issue 15 on the trace readers: bad numbers named by file and line, implausible spans refused,
memory in proportion to the file (not to the span it claims), consistent statistics. Real
`carlink trace info` processes; their peak memory read from the kernel (wait4)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from carlink.datasets.trace_readers import load_trace


# Runs the command and reports its peak RSS. A launcher of its own: a child forked from the test
# process would count the test process's memory as its own (the RSS high-water mark survives exec).
_LAUNCHER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
             "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
             "sys.exit(rc)")


def _peak_rss(*args: str) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in bytes) of `carlink trace info ARGS`."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "carlink.cli", "trace", "info",
                           *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    err, _, last = proc.stderr.rstrip("\n").rpartition("\n")
    assert last.startswith("peak_rss_kib "), proc.stderr
    return proc.returncode, err + ("\n" if err else ""), int(last.split()[1]) * 1024


@pytest.fixture(scope="module")
def baseline_rss(tmp_path_factory) -> int:
    """Peak RSS of `carlink trace info` on a two-line trace: the interpreter and its imports."""
    tiny = tmp_path_factory.mktemp("tiny") / "tiny.trace"
    tiny.write_text("0\n1000\n")
    rc, err, rss = _peak_rss(str(tiny))
    assert rc == 0, err
    return rss


@pytest.mark.parametrize("second", ["200000000000", "9000000000000000000", "99999999999999999999999"])
def test_implausible_spans_are_refused_at_the_cost_of_the_file(tmp_path, baseline_rss, second):
    path = tmp_path / "huge.trace"
    path.write_text(f"0\n{second}\n")
    rc, err, rss = _peak_rss(str(path))
    assert rc == 2 and err.startswith(f"carlink: error: {path}: line 2: timestamp {second} ms is implausible"), err
    assert "Traceback" not in err
    assert rss < baseline_rss + 32 * 2**20, f"{(rss - baseline_rss) / 2**20:.0f} MiB above the baseline"


def test_a_long_but_plausible_span_costs_memory_of_the_file_not_of_the_span(tmp_path, baseline_rss):
    path = tmp_path / "long.trace"
    path.write_text("0\n2000000000\n")  # 23 days: 2e9 windows of 1 ms if they were materialised
    rc, err, rss = _peak_rss("--window-ms", "1", "--json", str(path))
    assert rc == 0, err
    assert rss < baseline_rss + 32 * 2**20, f"{(rss - baseline_rss) / 2**20:.0f} MiB above the baseline"


def test_real_trace_memory_is_in_proportion_to_the_file(tmp_path, bandwidth_dir, baseline_rss):
    """The real TMobile trace looped to 4 x its length (8 M lines would be the issue's 50 MB)."""
    import numpy as np

    src = load_trace(bandwidth_dir / "mahimahi" / "TMobile-LTE-driving.down")
    opps, period = src.opportunities_ms, src.period_ms
    big = np.concatenate([opps + k * period for k in range(4)])
    path = tmp_path / "big.down"
    path.write_text("\n".join(map(str, big.tolist())) + "\n")
    rc, err, rss = _peak_rss(str(path))
    assert rc == 0, err
    # The file's bytes, its int64 array and a few array-sized temporaries.
    size = path.stat().st_size
    assert rss - baseline_rss < size + 5 * 8 * big.size, \
        f"{(rss - baseline_rss) / 2**20:.0f} MiB above the baseline for a {size / 2**20:.0f} MiB file"


@pytest.mark.parametrize("name, content, line, problem", [
    ("rate.csv", "1,Mbits/sec\nnan,Mbits/sec\n", 2, "rate is nan"),
    ("rate.csv", "1,Mbits/sec\n2,Mbits/sec\n1e999,Mbits/sec\n", 3, "rate is inf"),
    ("rate.csv", "-5,Mbits/sec\n", 1, "rate is -5.0"),
    ("throughput.list", "Run 1\n0.1,0.2,0.3\n1,nan,2\n0.1,0.2,0.3\n1,2,3\n", 3, "throughput value 2 is nan"),
    ("throughput.list", "Run 1\n0.1,0.2,0.3\n1,-2,2\n0.1,0.2,0.3\n1,2,3\n", 3, "throughput value 2 is -2.0"),
    ("throughput.list", "Run 1\n0.1,inf,0.3\n1,2,2\n0.1,0.2,0.3\n1,2,3\n", 2, "time 2 is inf"),
    ("ping.list", "Run 1\n30,nan,31\n", 2, "RTT 2 is nan"),
    ("g.csv", "Timestamp,DL_bitrate,PINGAVG\n2019.12.16_14.23.32,100,30\n2019.12.16_14.23.33,-1,30\n", 3,
     "column 'DL_bitrate' is -1.0"),
    ("g.csv", "Timestamp,DL_bitrate,PINGAVG\n2019.12.16_14.23.32,inf,30\n", 2, "column 'DL_bitrate' is inf"),
    ("mm.up", "0\n5\n-3\n", 3, "timestamp -3 ms is earlier"),
    ("mm.up", "0\n5\n7.5\n", 3, "expected an integer millisecond timestamp, found '7.5'"),
])
def test_bad_numbers_are_named_by_file_and_line(tmp_path, name, content, line, problem):
    path = tmp_path / name
    path.write_text(content)
    rc, err, _ = _peak_rss(str(path))
    assert rc == 2, err
    assert err.startswith(f"carlink: error: {path}: line {line}: {problem}"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("content", ["5\n", "1000\n", "1500\n", "0\n0\n0\n700\n"])
def test_one_line_and_short_traces_have_consistent_statistics(tmp_path, content):
    path = tmp_path / "short.up"
    path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "carlink.cli", "trace", "info", "--json", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (s,) = json.loads(proc.stdout)
    assert s["max_bps"] >= s["mean_bps"] > 0
    assert s["max_bps"] >= s["p95_bps"] >= s["p50_bps"] >= s["p5_bps"] >= 0
