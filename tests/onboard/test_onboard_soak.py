"""Soak: the pipeline at 10 Hz against a real server for CARLINK_SOAK_SECONDS (default 600).

After warm-up, resident memory must grow by less than 5 % and no thread or file descriptor may
leak. CI runs the full 10 minutes; locally, e.g. CARLINK_SOAK_SECONDS=30.
"""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest

from carlink.clock import WallClock
from carlink.onboard.pipeline import OnboardPipeline, load_onboard_models
from carlink.onboard.planning import load_onboard_tasks
from carlink.onboard.sink import JsonLinesSink
from carlink.onboard.sources import open_source

from onboard_testkit import make_config, start_server, write_profile

SOAK_S = float(os.environ.get("CARLINK_SOAK_SECONDS", "600"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _threads() -> int:
    # The in-process server's handler pool ("grpc_N") grows on demand with concurrency; it is the
    # cloud's, not the car's, so it is left out of the leak count.
    return sum(1 for t in threading.enumerate() if not t.name.startswith("grpc_"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
def test_soak_memory_threads_fds(tmp_path):
    srv = start_server()
    cfg = make_config(write_profile(tmp_path / "p.json"), f"127.0.0.1:{srv.port}")
    tasks = load_onboard_tasks(cfg.profile_path, cfg.tasks)
    clock = WallClock()
    sink = JsonLinesSink(tmp_path / "out.jsonl", include_detections=True)
    pipe = OnboardPipeline(cfg, tasks, clock, sink, load_onboard_models(tasks, "cpu"))
    warmup_s = min(60.0, SOAK_S * 0.2)
    n_frames = int(SOAK_S * cfg.source.rate_hz)
    samples: dict[str, tuple[int, int, int]] = {}
    src = open_source(cfg.source.model_copy(update={"max_frames": n_frames}), clock, {t.camera for t in tasks})
    t0 = clock.now()
    try:
        for frame in src:
            pipe.step(frame)
            if "warm" not in samples and clock.now() - t0 >= warmup_s:
                gc.collect()
                samples["warm"] = (_rss_bytes(), _threads(), _fds())
        time.sleep(0.5)
        gc.collect()
        samples["end"] = (_rss_bytes(), _threads(), _fds())
        emitted, sent, ok = pipe.emitted, pipe.uplink.counters.sent, pipe.uplink.counters.ok
    finally:
        pipe.close()
        srv.stop(0)
    (rss0, th0, fd0), (rss1, th1, fd1) = samples["warm"], samples["end"]
    print(f"soak {SOAK_S:.0f} s: rss {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB, threads {th0} -> {th1}, "
          f"fds {fd0} -> {fd1}, frames {emitted}, uploads {sent} ({ok} ok)")
    assert emitted == n_frames and ok > n_frames  # two tasks, mostly served by the cloud
    assert rss1 < rss0 * 1.05, f"resident memory grew {100 * (rss1 / rss0 - 1):.1f} % after warm-up"
    assert th1 <= th0, f"threads {th0} -> {th1}"
    assert fd1 <= fd0, f"file descriptors {fd0} -> {fd1}"
