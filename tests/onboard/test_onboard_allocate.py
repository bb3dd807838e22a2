"""`carlink allocate`: the car's own policy by default (same code, statistics and settings as the
daemon), a bare solve of the allocator only behind --bare-solve; errors name what is wrong."""

from __future__ import annotations

import json

import pytest

from carlink.allocator import Allocator, AllocatorConfig
from carlink.cli import main
from carlink.onboard.config import load_config
from carlink.onboard.planning import Planner, load_onboard_tasks
from carlink.profile import EXAMPLE_PROFILE, load_profile


def _json(capsys, *args: str) -> dict:
    assert main(["allocate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _choices(alloc) -> dict[str, str]:
    return {t["task"]: t["option"] for t in alloc["tasks"]} if isinstance(alloc, dict) else alloc.as_mapping()


def test_allocate_runs_the_cars_policy(capsys):
    out = _json(capsys, "--bandwidth", "4", "6", "8", "12", "--rtt", "30", "--backlog", "20000")
    daemon = Planner(load_onboard_tasks(EXAMPLE_PROFILE, []), AllocatorConfig())
    want = daemon.allocate([4e6, 6e6, 8e6, 12e6], 30.0, 20_000.0)
    assert _choices(out) == _choices(want)
    assert out["expected_utility"] == pytest.approx(want.expected_utility, rel=1e-12)
    assert out["solver"].startswith("expected-utility/") and out["estimate_bps"] == pytest.approx(7.5e6)
    assert out["used_bps"] <= out["bandwidth_bps"] <= 12e6


def test_allocate_table(capsys):
    assert main(["allocate", "--bandwidth", "10", "--rtt", "30"]) == 0
    table = capsys.readouterr().out
    assert "the car's policy" in table and "FRONT_LEFT" in table and "expected utility" in table
    assert main(["allocate", "--bandwidth", "0", "--rtt", "30"]) == 0
    table = capsys.readouterr().out
    assert "on-car" in table and "expected-utility/" in table


def test_bare_solve_is_the_allocator_alone_on_the_stated_statistics(capsys):
    out = _json(capsys, "--bandwidth", "10", "--rtt", "30", "--bare-solve", "--solver", "mckp", "--payload-stat", "mean")
    tasks = load_profile(EXAMPLE_PROFILE).to_tasks(payload="mean", runtime="p99")
    want = Allocator(tasks, AllocatorConfig(solver="mckp")).allocate(10e6, 30.0)
    assert _choices(out) == _choices(want) and out["bandwidth_bps"] == 10e6 and out["solver"] == "mckp"
    assert out["expected_utility"] == pytest.approx(want.expected_utility)
    assert main(["allocate", "--bandwidth", "10", "--rtt", "30", "--bare-solve"]) == 0
    assert "bare solve (not the car's policy; p95 payload, p99 runtime)" in capsys.readouterr().out


def test_statistics_only_with_a_bare_solve(capsys):
    assert main(["allocate", "--bandwidth", "10", "--rtt", "30", "--runtime-stat", "p50"]) == 2
    assert "--runtime-stat only with --bare-solve" in capsys.readouterr().err


def test_allocate_reads_the_cars_config(capsys, tmp_path):
    config = tmp_path / "car.toml"
    config.write_text(f'''
[daemon]
profile = "{EXAMPLE_PROFILE}"
[source]
kind = "synthetic"
[policy]
runtimes = ["p99"]
quantiles = [0.2]
[allocator]
headroom = {{fraction = 0.8}}
[[tasks]]
name = "FRONT"
deadline_ms = 120
[[tasks]]
name = "SIDE_LEFT"
weight = 3
''')
    out = _json(capsys, "--config", str(config), "--bandwidth", "3", "9", "15", "--rtt", "40")
    cfg = load_config(config)
    daemon = Planner(load_onboard_tasks(cfg.profile_path, cfg.tasks), cfg.allocator_config(), cfg.policy.settings())
    want = daemon.allocate([3e6, 9e6, 15e6], 40.0)
    assert list(_choices(out)) == ["FRONT", "SIDE_LEFT"] and _choices(out) == _choices(want)
    assert out["expected_utility"] == pytest.approx(want.expected_utility, rel=1e-12)
    assert out["bandwidth_bps"] in (0.0, pytest.approx(0.8 * 3e6))  # one quantile, after headroom


def test_cli_errors(capsys, tmp_path):
    assert main(["allocate", "--bandwidth", "10", "--rtt", "30", "--profile", str(tmp_path / "none.json")]) == 2
    assert "cannot read profile" in capsys.readouterr().err
    assert main(["allocate", "--bandwidth", "10", "--rtt", "30", "--config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["allocate", "--bandwidth", "-3", "--rtt", "30"])
    assert "--bandwidth: expected a finite number >= 0, got -3" in capsys.readouterr().err
    for flag, value, expected in (("--deadline", "0", "a finite number > 0"), ("--headroom", "1.5", "a number from 0 to 1")):
        with pytest.raises(SystemExit) as exit_info:
            main(["allocate", "--bandwidth", "10", "--rtt", "30", flag, value])
        assert exit_info.value.code == 2
        assert f"{flag}: expected {expected}, got {value}" in capsys.readouterr().err
