"""replay/distributed.py on a real local Ray (2 CPUs): order, one worker per actor, faults, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from carlink.replay.distributed import DistributedError, RayTarget, check_reachable, run_units
from ray_testkit import gcs_address, local_ray

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def ray():
    for ray in local_ray():
        # Ray workers do not have tests/ on their path: ship this module's classes by value.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield ray


@dataclass(frozen=True)
class Result:
    value: int
    pid: int
    worker: int  # id of the worker object that ran the unit


class Squarer:
    """A worker with state: counts its builds in the process, as a loaded model would be."""

    builds = 0

    def __init__(self, delay_s: float) -> None:
        Squarer.builds += 1
        self.delay_s = delay_s

    def run(self, unit: int) -> Result:
        if unit < 0:
            raise ValueError(f"unit {unit} is negative")
        # later units finish first: completion order is not the units' order
        time.sleep(self.delay_s * (1 + (unit % 3 == 0)))
        return Result(unit * unit, os.getpid(), id(self))


def make_squarer(delay_s: float = 0.05):
    return lambda: Squarer(delay_s)


TWO = RayTarget(workers=2)


def test_results_in_units_order_and_each_worker_built_once(ray) -> None:
    arrived: list[int] = []
    out = run_units(list(range(12)), make_squarer(), TWO, on_result=lambda i, r: arrived.append(i),
                    progress_bar=False)
    assert [r.value for r in out] == [i * i for i in range(12)]
    assert sorted(arrived) == list(range(12))
    assert len({r.pid for r in out}) == 2  # both workers ran units
    assert len({(r.pid, r.worker) for r in out}) == 2  # one worker object per actor, kept


def test_a_killed_worker_process_is_restarted_and_its_units_rerun(ray) -> None:
    killed: list[int] = []

    def kill_first_worker(i: int, r: Result) -> None:
        if not killed:
            killed.append(r.pid)
            os.kill(r.pid, signal.SIGKILL)  # the worker holds its next unit(s) now

    out = run_units(list(range(10)), make_squarer(0.2), TWO, on_result=kill_first_worker, progress_bar=False)
    assert [r.value for r in out] == [i * i for i in range(10)]
    pids = {r.pid for r in out}
    assert killed[0] in pids and len(pids) == 3  # the restarted worker is a new process


def test_a_unit_error_is_raised_as_itself_not_retried(ray) -> None:
    with pytest.raises(ValueError, match="unit -3 is negative"):
        run_units([1, 2, -3, 4], make_squarer(0.0), TWO, progress_bar=False)
    # the run's actors were stopped, and Ray is still usable
    assert [r.value for r in run_units([5], make_squarer(0.0), TWO, progress_bar=False)] == [25]


def test_interrupt_stops_the_run_and_leaves_ray_usable(ray) -> None:
    def interrupt(i: int, r: Result) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_units(list(range(8)), make_squarer(0.05), TWO, on_result=interrupt, progress_bar=False)
    assert [r.value for r in run_units([3], make_squarer(0.0), TWO, progress_bar=False)] == [9]


def test_a_running_cluster_is_reachable_an_absent_one_is_a_fast_clear_error(ray) -> None:
    check_reachable(gcs_address(ray), 5.0)
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1:1 "):
        check_reachable("127.0.0.1:1", 2.0)
    assert time.monotonic() - t0 < 5
    with pytest.raises(DistributedError, match="not HOST:PORT"):
        check_reachable("head-node", 2.0)
    with pytest.raises(DistributedError, match=r"\(ray://\) are not supported"):
        check_reachable("ray://head:10001", 2.0)


def test_a_non_ray_server_is_not_taken_for_a_cluster(tmp_path) -> None:
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = int(line.split(" port ")[1].split()[0])
        with pytest.raises(DistributedError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
            check_reachable(f"127.0.0.1:{port}", 3.0)
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs --workers N or --ray-address"),
    ({"workers": 0}, "--workers must be >= 1"),
    ({"address": " "}, "--ray-address is empty"),
])
def test_target_rejects_bad_settings(kwargs, message) -> None:
    with pytest.raises(DistributedError, match=message):
        RayTarget(**kwargs)


def test_a_local_ray_that_does_not_start_in_time_is_tried_again_then_a_clear_error() -> None:
    """Ray's GCS given no time at all (Ray's own variable, which start_local_ray leaves as the user
    set it): every start times out, each is tried, and the error says what happened."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "from carlink.replay.distributed import DistributedError, start_local_ray\n"
        "try:\n"
        "    start_local_ray(1)\n"
        "except DistributedError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    env = {**os.environ, "RAY_gcs_server_port_wait_time_s": "0"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "did not start in time (attempt 1 of 2): starting it again" in res.stderr
    assert res.stdout.startswith("ERROR a local Ray of 1 CPUs did not start (2 attempts; the GCS given 0 s"), res.stdout
    assert "Timed out waiting for file" in res.stdout
