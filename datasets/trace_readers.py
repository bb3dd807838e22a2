"""Readers of real cellular trace formats into :class:`~carlink.datasets.traces.Trace`.

Formats (``format=`` names; ``auto`` detects them from the content):

``mahimahi``
    One integer per line: a millisecond at which one 1500-byte packet may be delivered (Sprout /
    mahimahi ``.up``/``.down`` files). Period = last timestamp, as mm-link loops there.
``nuwins``
    NUWiNS 5G mmWave uplink ``throughput.list``: blocks ``Run N`` separated by ``#`` lines, each
    with four comma-separated lines: times (s) and Mbit/s values of series A, then of series B.
    Series A is the 5G uplink (default); B is undocumented (possibly the LTE anchor). Samples are
    100 ms apart; runs are concatenated and the few gaps inside a run (measurement not logged) are
    closed up, each sample holding for exactly one sampling step, which matches the README's
    "about 2,918 s" (samples x 100 ms).
``nuwins-ping``
    NUWiNS ``ping.list``: the same run blocks with one line of RTTs (ms) each. The file has no
    times; samples get a nominal spacing (``ping_interval_ms``, default 1000 ms). The trace has
    an RTT series and no capacity.
``mbps-csv``
    One rate per line and per second, ``<value>,<unit>`` with unit bits/sec, Kbits/sec,
    Mbits/sec or Gbits/sec (NYU-METS iPerf logs).
``gnettrack-csv``
    G-NetTrack Pro CSV (the Irish 5G dataset): ``DL_bitrate`` (kbit/s) is the capacity signal
    (``column=`` picks another rate column), ``PINGAVG`` (ms) the RTT, ``-`` marks a missing
    value (rate 0, RTT skipped). Timestamps have 1 s resolution and repeat (two rows in one
    second, none in the next): each ROW is taken as one 1-second sample, in file order, and
    timestamps are only checked to be non-decreasing. This reproduces the per-row statistics of
    the dataset README (2,887 rows -> 2,887 s, the wall clock span being 2,949 s).

A CSV inside a zip archive is read with ``path="archive.zip::member/path.csv"``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np

from carlink.datasets.errors import (
    NonMonotonicTimestampsError,
    TraceError,
    TraceParseError,
    UnknownTraceFormatError,
)
from carlink.datasets.traces import MAX_SPAN_MS, RttSeries, Trace

TRACE_FORMATS = ("mahimahi", "nuwins", "nuwins-ping", "mbps-csv", "gnettrack-csv")
_UNITS = {"bits/sec": 1.0, "kbits/sec": 1e3, "mbits/sec": 1e6, "gbits/sec": 1e9}
_RATE_LINE = re.compile(r"^\s*([^,\s]+)\s*,\s*([KMG]?bits/sec)\s*$", re.IGNORECASE)
_INT_LINE = re.compile(r"^\s*\d+\s*$")
_NUWINS_FIRST = re.compile(r"^(#+|Run\s+\d+)$", re.IGNORECASE)
ZIP_SEPARATOR = "::"


def read_trace_bytes(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """(bytes, display name) of a trace file, or of ``archive.zip::member``."""
    spec = str(path)
    if ZIP_SEPARATOR in spec:
        archive, member = spec.split(ZIP_SEPARATOR, 1)
        try:
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member), spec
        except KeyError:
            raise TraceError(f"{archive}: no member {member!r} in the archive") from None
        except (zipfile.BadZipFile, OSError) as exc:
            raise TraceError(f"{archive}: cannot read zip archive: {exc}") from None
    p = Path(spec)
    if p.suffix.lower() == ".zip":
        with zipfile.ZipFile(p) as zf:
            names = [n for n in zf.namelist() if n.endswith(".csv") and "__MACOSX" not in n]
        raise TraceError(f"{p}: a zip archive holds several traces; name one as "
                         f"'{p}{ZIP_SEPARATOR}MEMBER', e.g. {names[:3]}")
    return p.read_bytes(), spec


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnknownTraceFormatError(f"{name}: not a text trace file (byte {exc.start} is not UTF-8)") from None


def read_trace_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, display name) of a trace file, or of ``archive.zip::member``."""
    data, name = read_trace_bytes(path)
    return _text(data, name), name


def _head(data: bytes, name: str, lines: int = 200) -> str:
    """The first ``lines`` lines of a trace as text (what detect_trace_format looks at): its format
    is told without decoding or splitting the whole file."""
    end = 0
    for _ in range(lines):
        end = data.find(b"\n", end) + 1
        if end == 0:
            end = len(data)
            break
    return _text(data[:end], name)


def detect_trace_format(text: str, name: str = "<text>") -> str:
    """The format name of a trace's text (see the module docstring)."""
    lines = [ln.strip() for ln in text.splitlines()[:200] if ln.strip()]
    if not lines:
        raise UnknownTraceFormatError(f"{name}: empty file, cannot tell its trace format")
    first = lines[0]
    if _NUWINS_FIRST.match(first):
        data_lines = 0
        seen_run = False
        for ln in lines:
            if ln.lower().startswith("run"):
                if seen_run:
                    break
                seen_run = True
            elif not ln.startswith("#") and seen_run:
                data_lines += 1
        if data_lines == 4:
            return "nuwins"
        if data_lines == 1:
            return "nuwins-ping"
        raise UnknownTraceFormatError(
            f"{name}: looks like a NUWiNS run file but its first run has {data_lines} data lines "
            "(expected 4 for throughput.list or 1 for ping.list)")
    if "DL_bitrate" in first and "Timestamp" in first:
        return "gnettrack-csv"
    if _RATE_LINE.match(first):
        return "mbps-csv"
    if _INT_LINE.match(first):
        return "mahimahi"
    raise UnknownTraceFormatError(
        f"{name}: unknown trace format; line 1 is {first[:60]!r}; expected one of: "
        "mahimahi (an integer ms per line), nuwins/nuwins-ping ('Run N' blocks), "
        "mbps-csv ('<value>,Mbits/sec'), gnettrack-csv (header with Timestamp and DL_bitrate)")


def load_trace(path: str | os.PathLike[str], format: str = "auto", **options: object) -> Trace:
    """Read a trace file (or ``archive.zip::member``) of any supported format."""
    data, name = read_trace_bytes(path)
    if format == "auto":
        format = detect_trace_format(_head(data, name), name)
    parser = _PARSERS.get(format)
    if parser is None:
        raise UnknownTraceFormatError(
            f"{name}: unknown trace format {format!r}; expected auto or one of {', '.join(TRACE_FORMATS)}")
    try:
        if format == "mahimahi":  # the large ones: parsed from the bytes, never split into strings
            return parse_mahimahi_bytes(data, name, **options)
        return parser(_text(data, name), name, **options)
    except ValueError as exc:  # e.g. a rate trace longer than MAX_SPAN_MS, a run that is not there
        raise TraceError(f"{name}: {exc}") from None


# -- mahimahi -----------------------------------------------------------------------------------

def parse_mahimahi(text: str, name: str) -> Trace:
    return parse_mahimahi_bytes(text.encode("utf-8"), name)


def parse_mahimahi_bytes(data: bytes, name: str) -> Trace:
    """One integer millisecond per line, parsed in C (numpy) from the bytes: memory is the file
    plus its int64 array, whatever the timestamps say. Timestamps must be non-negative,
    non-decreasing and within MAX_SPAN_MS (a trace spanning more is a typo or a foreign file)."""
    text = None  # decoded only to name the line of a problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (and stops) at the first token that is no integer
        try:
            opps = np.fromstring(data, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            opps = None
    if opps is None:
        text = _text(data, name)
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip() and not _INT_LINE.match(line):
                raise TraceParseError(name, i, f"expected an integer millisecond timestamp, found {line.strip()[:40]!r}")
        raise TraceParseError(name, 1, "expected one integer millisecond timestamp per line")
    if not opps.size:
        raise TraceParseError(name, 1, "no timestamps in mahimahi trace")
    huge = np.flatnonzero(opps > MAX_SPAN_MS)  # also numpy's saturated value for digits beyond int64
    if huge.size:
        text = _text(data, name)
        line = _line_of_value(text, int(huge[0]))
        raise TraceParseError(
            name, line, f"timestamp {text.splitlines()[line - 1].strip()[:30]} ms is implausible: the trace "
            f"would span more than the limit of {MAX_SPAN_MS // 86_400_000} days")
    back = np.flatnonzero(opps[1:] < opps[:-1])
    if back.size:
        line = _line_of_value(_text(data, name), int(back[0]) + 1)
        raise NonMonotonicTimestampsError(
            name, line, f"timestamp {opps[back[0] + 1]} ms is earlier than the previous one "
            f"({opps[back[0]]} ms); mahimahi timestamps must be non-decreasing")
    if opps[0] < 0:
        raise TraceParseError(name, 1, f"negative timestamp {opps[0]} ms")
    if opps[-1] <= 0:
        raise TraceParseError(name, _line_of_value(_text(data, name), opps.size - 1),
                              "the last timestamp must be > 0 ms (it is the period of the trace)")
    return Trace(opps, int(opps[-1]), Path(name).name, f"mahimahi:{name}")


def _line_of_value(text: str, value_index: int) -> int:
    """1-based line number of the value_index-th non-blank line."""
    seen = -1
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            seen += 1
            if seen == value_index:
                return i
    return seen + 1


# -- NUWiNS ---------------------------------------------------------------------------------------

def _nuwins_runs(text: str, name: str) -> list[tuple[int, list[tuple[int, str]]]]:
    """[(run header line, [(line number, data line), ...]), ...]"""
    runs: list[tuple[int, list[tuple[int, str]]]] = []
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("run"):
            runs.append((i, []))
        elif not runs:
            raise TraceParseError(name, i, "data before the first 'Run N' header")
        else:
            runs[-1][1].append((i, line))
    if not runs:
        raise TraceParseError(name, 1, "no 'Run N' blocks found")
    return runs


def _floats(line: str, name: str, lineno: int, what: str = "value", non_negative: bool = True) -> np.ndarray:
    """The comma-separated numbers of one line; NaN, infinities (and, for rates and RTTs, negative
    numbers) are refused naming the line and the position, as a bad token is."""
    try:
        values = np.array([float(x) for x in line.split(",") if x.strip()], dtype=np.float64)
    except ValueError as exc:
        raise TraceParseError(name, lineno, f"expected comma-separated numbers: {exc}") from None
    bad = ~np.isfinite(values) | ((values < 0) if non_negative else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        need = "a finite number >= 0" if non_negative else "a finite number"
        raise TraceParseError(name, lineno, f"{what} {i + 1} is {values[i]}: each must be {need}")
    return values


def _check_rate(value: float, name: str, lineno: int, what: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise TraceParseError(name, lineno, f"{what} is {value}: it must be a finite number >= 0")
    return value


def parse_nuwins(
    text: str, name: str, series: str = "A", runs: tuple[int, ...] | None = None, strict_times: bool = True,
) -> Trace:
    """NUWiNS throughput.list; ``series`` 'A' (5G uplink) or 'B'; ``runs``: 1-based run numbers.

    Times must increase within a run unless ``strict_times=False``, which takes the samples in
    file order. The real file's series B needs that: its times go back by up to 25 s in places
    (3 to 42 times per run), series A's never do.
    """
    if series not in ("A", "B"):
        raise ValueError(f"NUWiNS series must be 'A' or 'B', got {series!r}")
    offset = 0 if series == "A" else 2
    values, steps = [], []
    all_runs = _nuwins_runs(text, name)
    for number, (header_line, lines) in enumerate(all_runs, 1):
        if runs is not None and number not in runs:
            continue
        if len(lines) != 4:
            raise TraceParseError(name, header_line, f"run {number}: expected 4 data lines "
                                  f"(times A, values A, times B, values B), found {len(lines)}")
        (t_line, t_text), (v_line, v_text) = lines[offset], lines[offset + 1]
        times = _floats(t_text, name, t_line, "time", non_negative=False)
        vals = _floats(v_text, name, v_line, "throughput value")
        if times.size != vals.size:
            raise TraceParseError(name, v_line, f"run {number}: {vals.size} values for {times.size} times")
        back = np.flatnonzero(np.diff(times) <= 0)
        if back.size and strict_times:
            raise NonMonotonicTimestampsError(
                name, t_line, f"run {number}: time {times[back[0] + 1]} s at position {back[0] + 2} "
                f"does not increase (previous {times[back[0]]} s); strict_times=False reads the "
                "samples in file order")
        if times.size > 1:
            steps.append(np.median(np.diff(times)))  # the sampling step (100 ms), robust to gaps
        values.append(vals)
    if runs is not None and len(values) != len(runs):
        raise ValueError(f"{name}: runs {runs} requested, the file has runs 1..{len(all_runs)}")
    step_ms = int(round(float(np.median(steps)) * 1000)) if steps else 100
    label = f"{Path(name).name}:{series}"
    return Trace.from_rates(np.concatenate(values) * 1e6, step_ms, label, f"nuwins:{name}")


def parse_nuwins_ping(text: str, name: str, ping_interval_ms: int = 1000) -> Trace:
    rtts = [_floats(line, name, lineno, "RTT") for _, lines in _nuwins_runs(text, name) for lineno, line in lines]
    rtt = np.concatenate(rtts) if rtts else np.empty(0)
    if not rtt.size:
        raise TraceParseError(name, 1, "no RTT samples")
    times = np.arange(rtt.size, dtype=np.float64) * ping_interval_ms
    return Trace(np.empty(0, np.int64), rtt.size * ping_interval_ms, Path(name).name,
                 f"nuwins-ping:{name}", RttSeries(times, rtt))


# -- 1 s rate CSV (NYU-METS) -----------------------------------------------------------------------

def parse_mbps_csv(text: str, name: str, interval_ms: int = 1000) -> Trace:
    rates = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _RATE_LINE.match(line)
        if not m:
            raise TraceParseError(name, i, f"expected '<value>,<unit>bits/sec', found {line.strip()[:40]!r}")
        try:
            value = float(m[1])
        except ValueError:
            raise TraceParseError(name, i, f"not a number: {m[1]!r}") from None
        rates.append(_check_rate(value, name, i, "rate") * _UNITS[m[2].lower()])
    if not rates:
        raise TraceParseError(name, 1, "no samples")
    return Trace.from_rates(np.array(rates), interval_ms, Path(name).name, f"mbps-csv:{name}")


# -- G-NetTrack CSV (Irish 5G dataset) ---------------------------------------------------------

def parse_gnettrack_csv(text: str, name: str, column: str = "DL_bitrate", rtt_column: str = "PINGAVG") -> Trace:
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    for needed in ("Timestamp", column):
        if needed not in fields:
            raise TraceParseError(name, 1, f"missing column {needed!r}; columns are {fields}")
    rates, rtt_t, rtt_v = [], [], []
    previous: datetime | None = None
    for row in reader:
        line = reader.line_num
        try:
            stamp = datetime.strptime(row["Timestamp"], "%Y.%m.%d_%H.%M.%S")
        except (TypeError, ValueError):
            raise TraceParseError(name, line, f"timestamp {row['Timestamp']!r} is not YYYY.MM.DD_hh.mm.ss") from None
        if previous is not None and stamp < previous:
            raise NonMonotonicTimestampsError(
                name, line, f"timestamp {row['Timestamp']} is earlier than the previous row's "
                f"({previous:%Y.%m.%d_%H.%M.%S}); rows must be in time order")
        previous = stamp
        rates.append(_cell(row[column], name, line, column) or 0.0)
        if rtt_column in row:
            rtt = _cell(row[rtt_column], name, line, rtt_column)
            if rtt is not None:
                rtt_t.append((len(rates) - 1) * 1000.0)
                rtt_v.append(rtt)
    if not rates:
        raise TraceParseError(name, 2, "no data rows")
    rtt_series = RttSeries(np.array(rtt_t), np.array(rtt_v)) if rtt_v else None
    label = f"{Path(name).name}:{column}"
    return Trace.from_rates(np.array(rates) * 1e3, 1000, label, f"gnettrack-csv:{name}", rtt_series)


def _cell(value: str | None, name: str, line: int, column: str) -> float | None:
    if value is None or value.strip() in ("", "-"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise TraceParseError(name, line, f"column {column!r}: {value!r} is not a number") from None
    return _check_rate(number, name, line, f"column {column!r}")


_PARSERS = {
    "mahimahi": parse_mahimahi,
    "nuwins": parse_nuwins,
    "nuwins-ping": parse_nuwins_ping,
    "mbps-csv": parse_mbps_csv,
    "gnettrack-csv": parse_gnettrack_csv,
}
