"""`carlink profile run --workers N / --ray-address`: the same profile as the serial run, on a real
local Ray (2 CPUs); a killed worker, Ctrl-C, an unreachable cluster and a missing Ray extra.

Runtimes come from a table, so profiles are compared byte for byte. One Ray runs in this process
for the module (the in-process runs, and the "cluster" a subprocess joins by address); the Ctrl-C
test starts its own, as a user's `--workers 2` does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carlink.replay.distributed import RayTarget
from carlink.replay.profiling import (
    ProfileConfig,
    ProfilingStopped,
    RuntimeTable,
    checkpoint_path,
    iter_measurements,
    parse_options,
    run_profile,
)
from ray_testkit import WITHOUT_RAY, carlink_argv, cmdline, descendants, gcs_address, local_ray

ONBOARD = "yolo-fastest-1.1-320x320"
MODELS = ("yolo-fastest-1.1-416x416", "mobilenetv2-yolov3-nano-320x320")
OPTIONS = "input:jpeg75,native:jpeg90"
TABLE = ("model,resize,runtime_ms_p50,runtime_ms_p99\n"
         f"{ONBOARD},*,9,14\n{MODELS[0]},*,15,22.5\n{MODELS[1]},*,21,30\n")
MAX_FRAMES = 3
CTRL_C_FRAMES = 10
OUTPUT = "profile.json"  # relative, run from a folder of its own: the command line in the file is the same


@pytest.fixture(scope="module")
def ray():
    yield from local_ray()


@pytest.fixture(scope="module")
def setup(tf_example_files, models_dir, tmp_path_factory):
    """Two real 1 Hz sequences, three Darknet models, a runtime table, and the serial profile."""
    scenes = tuple(str(p) for p in tf_example_files[:2])
    table = tmp_path_factory.mktemp("table") / "runtimes.csv"
    table.write_text(TABLE)
    config = ProfileConfig(scenes=scenes, models=MODELS, onboard=ONBOARD, transports=parse_options(OPTIONS),
                           tasks=("FRONT",), max_frames=MAX_FRAMES)
    serial = _run_in(tmp_path_factory.mktemp("serial"), config, table)
    return config, table, serial.read_bytes()


def _run_in(folder: Path, config: ProfileConfig, table: Path, **kw) -> Path:
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        run_profile(config, OUTPUT, table=RuntimeTable.load(table), progress_bar=False, **kw)
    finally:
        os.chdir(cwd)
    return folder / OUTPUT


def _argv(config: ProfileConfig, table: Path, *extra: str) -> list[str]:
    return carlink_argv("profile", "run", *config.scenes, "--tasks", "FRONT", "--models", ",".join(MODELS),
                        "--onboard", ONBOARD, "--options", OPTIONS, "--max-frames", str(config.max_frames),
                        "--runtime-table", str(table), "-o", OUTPUT, "--no-progress", *extra)


def _measurements(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll_s)


def test_two_workers_give_the_serial_profile_byte_for_byte(ray, setup, tmp_path) -> None:
    config, table, serial = setup
    assert _run_in(tmp_path, config, table, ray=RayTarget(workers=2)).read_bytes() == serial
    assert not checkpoint_path(tmp_path / OUTPUT).exists()


def test_measured_runtimes_differ_only_in_timing_fields(ray, setup, tmp_path, monkeypatch) -> None:
    config, _, _ = setup
    one = dataclasses.replace(config, max_frames=1)
    docs = []
    for name, target in (("serial", None), ("ray", RayTarget(workers=2))):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        run_profile(one, OUTPUT, progress_bar=False, ray=target)
        docs.append(_without_timing(json.loads((tmp_path / name / OUTPUT).read_text())))
    assert docs[0] == docs[1]


def _without_timing(doc):
    """The profile less what records time or the machine: runtimes and where they were measured."""
    if isinstance(doc, dict):
        return {k: _without_timing(v) for k, v in doc.items()
                if not k.startswith("runtime_ms") and k != "runtime"}
    if isinstance(doc, list):
        return [_without_timing(v) for v in doc]
    return doc


def test_a_stopped_ray_run_resumes_to_the_same_profile(ray, setup, tmp_path) -> None:
    config, table, serial = setup
    with pytest.raises(ProfilingStopped):
        _run_in(tmp_path, config, table, ray=RayTarget(workers=2), stop_after=4)
    ckpt = checkpoint_path(tmp_path / OUTPUT)
    made = len(list(iter_measurements(ckpt)))
    assert 4 <= made < 2 * MAX_FRAMES * (1 + 4)  # whole units, appended as they arrived
    assert _run_in(tmp_path, config, table, ray=RayTarget(workers=2), resume=True).read_bytes() == serial


def test_a_worker_killed_mid_run_is_retried_on_a_cluster_given_by_address(ray, setup, tmp_path) -> None:
    """The CLI joins this module's Ray by address; its workers are SIGKILLed mid-run."""
    config, table, serial = setup
    proc = subprocess.Popen(_argv(config, table, "--ray-address", gcs_address(ray), "--workers", "2"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _measurements(checkpoint_path(tmp_path / OUTPUT)) >= 1, 240, "a first unit")
        # this module's Ray runs the CLI's workers, so they are below this process
        workers = [p for p in descendants(os.getpid()) if "_WorkerHost" in cmdline(p)]
        assert workers, "no Ray worker of the run found"
        for pid in workers:  # both: each held a unit in flight (two are queued per worker)
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert (tmp_path / OUTPUT).read_bytes() == serial


# Exec ``argv`` with SIGINT at its default, as a terminal's shell starts a foreground job. A test
# run started in the background (`pytest &`, a CI runner) has SIGINT ignored, and children inherit
# that: the CLI would then never see Ctrl-C (only its Ray workers did, some of the time).
_SIGINT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execv(sys.argv[1], sys.argv[1:])")


def _as_terminal_job(argv: list[str]) -> list[str]:
    return [sys.executable, "-c", _SIGINT_DEFAULT, *argv]


def _interrupt_after_first_unit(config: ProfileConfig, table: Path, folder: Path):
    """Run the CLI with 2 workers and press Ctrl-C once its first unit is in the checkpoint:
    (process, stderr, the run's processes seen at the interrupt)."""
    proc = subprocess.Popen(_as_terminal_job(_argv(config, table, "--workers", "2")), cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: _measurements(checkpoint_path(folder / OUTPUT)) >= 1, 240, "a first unit", poll_s=0.01)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        ray_processes = descendants(proc.pid)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc, err, ray_processes


def test_ctrl_c_stops_the_run_and_the_checkpoint_resumes(setup, tmp_path) -> None:
    config, table, _ = setup
    # Ten frames a scene, so that work remains after the first unit: the signal must find the run
    # mid-way. On a very busy machine the rest can still end first; such a run proves nothing about
    # Ctrl-C, so it is run again in a fresh folder.
    config = dataclasses.replace(config, max_frames=CTRL_C_FRAMES)
    for attempt in range(3):
        folder = tmp_path / f"attempt{attempt}"
        folder.mkdir()
        proc, err, ray_processes = _interrupt_after_first_unit(config, table, folder)
        if not (proc.returncode == 0 and (folder / OUTPUT).exists()):
            break
    assert proc.returncode == 130, err[-3000:]
    assert "carlink: interrupted" in err
    assert not (folder / OUTPUT).exists()
    _wait_for(lambda: not [p for p in ray_processes if Path(f"/proc/{p}").exists()
                           and "zombie" not in _state(p)], 30, "the run's Ray processes to end")
    # every line is a whole measurement, and the serial path resumes from it to the serial profile
    made = len(list(iter_measurements(checkpoint_path(folder / OUTPUT))))
    assert made >= 1
    (tmp_path / "serial").mkdir()
    reference = _run_in(tmp_path / "serial", config, table).read_bytes()
    assert _run_in(folder, config, table, resume=True).read_bytes() == reference


def _state(pid: int) -> str:
    try:
        return "zombie" if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z" else "alive"
    except (OSError, IndexError):
        return "gone"


def test_an_unreachable_cluster_is_a_fast_error_naming_the_address(setup, tmp_path) -> None:
    config, table, _ = setup
    t0 = time.monotonic()
    res = subprocess.run(_argv(config, table, "--ray-address", "127.0.0.1:1"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.startswith("carlink: error: cannot reach a Ray cluster at 127.0.0.1:1 ")
    assert time.monotonic() - t0 < 60  # Python start-up and imports on a busy machine; no Ray retries
    assert not checkpoint_path(tmp_path / OUTPUT).exists()  # nothing was started


def test_without_ray_the_serial_path_works_and_the_options_name_the_extra(setup, tmp_path) -> None:
    config, table, serial = setup
    blocked = [sys.executable, "-c", WITHOUT_RAY]
    res = subprocess.run(blocked + _argv(config, table, "--workers", "2")[3:], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.startswith("carlink: error: --workers/--ray-address run on Ray, which is not installed")
    assert "pip install 'carlink[ray]'" in res.stderr
    res = subprocess.run(blocked + _argv(config, table)[3:], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / OUTPUT).read_bytes() == serial
