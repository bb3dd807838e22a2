"""The CPU wake-up latency request (Linux PM QoS) the daemon can hold: the real /dev/cpu_dma_latency."""

from __future__ import annotations

import os

import pytest

from carlink.onboard.config import ConfigError, parse_config
from carlink.onboard.cpu_latency import PM_QOS_DEVICE, CpuLatencyError, CpuLatencyRequest, current_limit_us

from onboard_testkit import DaemonThread, start_server, write_profile
from timing_testkit import wait_for

needs_pm_qos = pytest.mark.skipif(
    not (os.path.exists(PM_QOS_DEVICE) and os.access(PM_QOS_DEVICE, os.R_OK | os.W_OK)),
    reason=f"{PM_QOS_DEVICE} is absent or not writable here (needs root or the udev rule)",
)


@needs_pm_qos
def test_request_is_in_force_while_held_and_dropped_on_close():
    before = current_limit_us()
    with CpuLatencyRequest(777) as req:
        assert req.active
        assert current_limit_us() == min(before, 777)
    assert not req.active
    assert current_limit_us() == before
    req.close()  # idempotent


def test_unusable_device_is_a_clear_error(tmp_path):
    missing = tmp_path / "no_such_device"
    with pytest.raises(CpuLatencyError, match=f"cannot open {missing}: No such file"):
        CpuLatencyRequest(0, device=str(missing))
    with pytest.raises(ValueError, match="outside 0.."):
        CpuLatencyRequest(-1, device=str(missing))


def test_config_refuses_a_negative_latency(tmp_path):
    with pytest.raises(ConfigError, match=r"daemon.cpu_wakeup_latency_us: Input should be greater than or equal to 0"):
        parse_config({"daemon": {"profile": "p.json", "cpu_wakeup_latency_us": -5}, "source": {"kind": "synthetic"}})


@needs_pm_qos
def test_daemon_holds_the_configured_limit_follows_reloads_and_drops_it_at_stop(tmp_path):
    baseline = current_limit_us()
    if baseline <= 900:
        pytest.skip(f"another process holds a lower limit ({baseline} us): the daemon's would not show")
    srv = start_server()
    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",))
    config = tmp_path / "c.toml"

    def write(latency_us: int) -> None:
        config.write_text(
            f'[daemon]\nprofile = "{profile}"\ndevice = "cpu"\ncpu_wakeup_latency_us = {latency_us}\n'
            f'[source]\nkind = "synthetic"\nrate_hz = 20\n[cloud]\naddress = "127.0.0.1:{srv.port}"\ninsecure = true\n'
            f'[sink]\npath = "{tmp_path / "out.jsonl"}"\n'
        )

    write(900)
    running = DaemonThread(config)
    try:
        assert wait_for(lambda: current_limit_us() == 900), f"limit is {current_limit_us()}, not 900"
        write(850)
        running.daemon.request_reload()
        assert wait_for(lambda: running.daemon.reloads == 1)
        assert current_limit_us() == 850
    finally:
        rc = running.stop()
        srv.stop(0)
    assert rc == 0
    assert current_limit_us() == baseline
