"""`carlink replay sweep --workers N`: the grid's replays on a real local Ray (2 CPUs) give the
serial sweep's summary byte for byte."""

from __future__ import annotations

from carlink.cli import main
from carlink.replay.distributed import RayTarget
from carlink.replay.sweep import Grid, ReplaySettings, SceneSet
from carlink.replay.sweep_cli import run_sweep

import pytest

from ray_testkit import local_ray
from replay_testkit import sweep_inputs

POLICIES = ("carlink", "turbo", "on-car", "oracle")


@pytest.fixture(scope="module")
def ray():
    yield from local_ray()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tf_example_files, bandwidth_dir):
    return sweep_inputs(tmp_path_factory.mktemp("sweep"), tf_example_files, bandwidth_dir)


def test_the_sweep_on_two_workers_is_the_serial_sweep(ray, setup) -> None:
    files, truth, traces = setup
    grid = Grid(scene_sets=(SceneSet("car", compositions=(tuple(map(str, files)),), rate_hz=10.0),),
                traces=traces, scales=(0.25, 1.0), offsets_s=(0.0, 30.0, 60.0),
                settings=ReplaySettings(POLICIES, str(truth), utilities="truth", truth=str(truth), max_frames=10))
    serial = run_sweep(grid)
    assert run_sweep(grid, ray=RayTarget(workers=2)).to_json() == serial.to_json()


def test_cli_workers_write_the_serial_sweep_json(ray, setup, tmp_path, capsys) -> None:
    files, truth, traces = setup
    args = ["replay", "sweep", *map(str, files), "--each", "--truth", str(truth), "--profile", str(truth),
            "--trace", traces[0].path, "--scales", "0.5,1", "--offsets", "0,50", "--max-frames", "8",
            "--policies", ",".join(POLICIES), "--no-report", "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "serial")]) == 0
    assert main(args + ["-o", str(tmp_path / "ray"), "--workers", "2"]) == 0
    assert (tmp_path / "ray" / "sweep.json").read_bytes() == (tmp_path / "serial" / "sweep.json").read_bytes()
    capsys.readouterr()
    assert main(args + ["-o", str(tmp_path / "x"), "--verbose"]) == 2
    assert "--verbose shows the Ray workers' logs: it needs --workers or --ray-address" in capsys.readouterr().err
