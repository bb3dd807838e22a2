"""`carlink replay sweep`: a grid of independent replays -> one deterministic summary with bootstrap
intervals; pure units; clear errors for an empty grid, an unknown policy or trace format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from carlink.cli import main
from carlink.replay.sweep import Grid, PolicyTotals, ReplaySettings, SceneSet, SweepError, TraceRef, run_grid, run_one
from carlink.replay.sweep_cli import run_sweep
from carlink.replay.sweep_stats import bootstrap_gain_pp

from replay_testkit import sweep_inputs

POLICIES = ("carlink", "turbo", "on-car", "oracle")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tf_example_files, bandwidth_dir):
    return sweep_inputs(tmp_path_factory.mktemp("sweep"), tf_example_files, bandwidth_dir)


def _grid(setup, **kw) -> Grid:
    """The test grid; keywords of ReplaySettings (policies...) go to its settings, the others to the grid."""
    files, truth, traces = setup
    settings = dict(policies=POLICIES, profile=str(truth), utilities="truth", truth=str(truth), max_frames=10)
    grid = dict(scene_sets=(SceneSet("car", compositions=(tuple(map(str, files)),), rate_hz=10.0),),
                traces=traces, scales=(0.25, 1.0), offsets_s=(0.0, 30.0, 60.0))
    for k, v in kw.items():
        (settings if k in ReplaySettings.__dataclass_fields__ else grid)[k] = v
    return Grid(settings=ReplaySettings(**settings), **grid)


def test_sweep_is_deterministic_and_covers_the_grid(setup):
    grid = _grid(setup)
    a, b = run_sweep(grid), run_sweep(grid)
    assert a.to_json() == b.to_json()
    doc = json.loads(a.to_json())
    assert len(doc["runs"]) == 1 * 2 * 2 * 3
    assert [(g["trace"], g["scale"]) for g in doc["groups"]] == [
        ("TMobile-LTE-short.up", 0.25), ("TMobile-LTE-short.up", 1.0), ("Car_1.csv", 0.25), ("Car_1.csv", 1.0)]
    for g in doc["groups"]:
        rows = g["policies"]
        assert set(rows) == set(POLICIES)
        assert rows["on-car"]["gain_pp"] == 0.0 and rows["on-car"]["bytes_sent"] == 0
        assert rows["oracle"]["share_of_oracle_gain"] in (None, 1.0)
        for r in rows.values():
            assert r["replays"] == 3 and r["task_frames"] == 3 * 10 * 3
            if r["gain_pp"] is not None:
                assert r["gain_pp_low"] - 1e-9 <= r["gain_pp"] <= r["gain_pp_high"] + 1e-9
    assert "composed from real sequences" in doc["inputs"]["scenes"] and doc["inputs"]["rate_hz"] == 10


def test_units_are_pure_and_merge_in_grid_order(setup):
    grid = _grid(setup, scales=(0.5,), offsets_s=(0.0, 60.0))
    specs = grid.specs()
    assert [(s.trace.label, s.offset_s) for s in specs] == [
        ("TMobile-LTE-short.up", 0.0), ("TMobile-LTE-short.up", 60.0), ("Car_1.csv", 0.0), ("Car_1.csv", 60.0)]
    serial = run_grid(specs)
    reversed_then_sorted = list(reversed([run_one(s) for s in reversed(specs)]))
    assert serial == reversed_then_sorted  # a unit's result does not depend on what ran before
    assert isinstance(serial[0].policies["carlink"], PolicyTotals)


def test_offsets_spread_over_each_trace(setup):
    grid = _grid(setup, offsets_s=(), offsets_per_trace=4, scales=(1.0,))
    offsets = {}
    for s in grid.specs():
        offsets.setdefault(s.trace.label, []).append(s.offset_s)
    assert len(offsets["TMobile-LTE-short.up"]) == 4 and offsets["TMobile-LTE-short.up"][0] == 0.0
    # Spread over each trace's own length (140 s and 1264 s), the replay fitting inside.
    assert max(offsets["TMobile-LTE-short.up"]) < 140 and max(offsets["Car_1.csv"]) > 500


def test_bootstrap_interval_narrows_with_consistent_replays():
    def tot(u: float) -> PolicyTotals:
        return PolicyTotals(u * 10, 10.0, 10, 10, 0, 0, 0, 0, 0, 0, 0, 1)

    base = [tot(0.2)] * 8
    steady = bootstrap_gain_pp([tot(0.3)] * 8, base)
    noisy = bootstrap_gain_pp([tot(v) for v in (0.1, 0.5, 0.2, 0.4, 0.3, 0.3, 0.05, 0.55)], base)
    assert steady == pytest.approx((10.0, 10.0))
    assert noisy[0] < 10.0 < noisy[1] and noisy[1] - noisy[0] > 5.0
    assert noisy == bootstrap_gain_pp([tot(v) for v in (0.1, 0.5, 0.2, 0.4, 0.3, 0.3, 0.05, 0.55)], base)


def test_grid_errors_say_what_is_wrong(setup):
    with pytest.raises(SweepError, match="grid is empty: no trace"):
        _grid(setup, traces=())
    with pytest.raises(SweepError, match="grid is empty: no scale"):
        _grid(setup, scales=())
    with pytest.raises(SweepError, match="unknown policy bogus"):
        _grid(setup, policies=("carlink", "on-car", "bogus"))
    with pytest.raises(SweepError, match="needs the on-car policy"):
        _grid(setup, policies=("carlink",))
    with pytest.raises(SweepError, match="unknown trace format 'bogus'"):
        TraceRef("x.up", "bogus")


def test_cli_sweep_writes_summary_table_and_report(tmp_path, setup, capsys):
    files, truth, traces = setup
    out = tmp_path / "o"
    args = ["replay", "sweep", "--compose", ",".join(map(str, files)), "--rate-hz", "10", "--truth", str(truth),
            "--profile", str(truth), "--trace", traces[0].path, "--scales", "0.5,1", "--offsets", "0,50",
            "--policies", "carlink,turbo,on-car,oracle", "--max-frames", "8", "-o", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "gain pp [95% CI]" in printed.out and "composed from real sequences" in printed.out
    first = (out / "sweep.json").read_bytes()
    assert (out / "gain_vs_scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gain_vs_scale.png" in (out / "report.html").read_text()
    # The planning profile is the truth file itself here: the sweep warns that this is no evaluation.
    assert "not an evaluation" in printed.err
    assert main(args) == 0
    assert (out / "sweep.json").read_bytes() == first  # byte for byte


@pytest.mark.parametrize("extra, message", [
    (["--policies", "carlink,bogus,on-car"], "unknown policy bogus"),
    (["--trace-format", "bogus"], "unknown trace format 'bogus'"),
    (["--scales", ""], "grid is empty: no scale"),
    (["--offsets-per-trace", "0"], "grid is empty: no trace offset"),
])
def test_cli_sweep_errors(tmp_path, setup, capsys, extra, message):
    files, truth, traces = setup
    code = main(["replay", "sweep", str(files[0]), "--trace", traces[0].path, "--profile", str(truth), *extra,
                 "-o", str(tmp_path), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("carlink: error:") and message in err


def test_cli_sweep_without_traces_or_scenes(tmp_path, setup, capsys):
    files, truth, _ = setup
    assert main(["replay", "sweep", str(files[0]), "--profile", str(truth), "-o", str(tmp_path)]) == 2
    assert "grid is empty: no trace" in capsys.readouterr().err
    assert main(["replay", "sweep", "--trace", "x.up", "--profile", str(truth), "-o", str(tmp_path)]) == 2
    assert "grid is empty: no scene set" in capsys.readouterr().err


def test_unknown_trace_content_is_a_clear_error(tmp_path, setup, capsys):
    files, truth, _ = setup
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n")
    code = main(["replay", "sweep", str(files[0]), "--trace", str(junk), "--profile", str(truth),
                 "--offsets", "0", "-o", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("carlink: error:") and "junk.txt" in err


def test_seeded_bootstrap_uses_numpy_generator():
    # The interval is reproducible because the generator is seeded; another seed moves it.
    def tot(u):
        return PolicyTotals(u, 1.0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1)

    vals = [tot(float(v)) for v in np.linspace(0.1, 0.9, 9)]
    base = [tot(0.1)] * 9
    assert bootstrap_gain_pp(vals, base, seed=1) != bootstrap_gain_pp(vals, base, seed=2)


def test_grid_refuses_ambiguous_traces_and_scales(setup):
    _, _, traces = setup
    with pytest.raises(SweepError, match="named TMobile-LTE-short.up more than once"):
        _grid(setup, traces=(traces[0], traces[0]))
    with pytest.raises(SweepError, match="scales listed twice"):
        _grid(setup, scales=(1.0, 1.0))


def test_paired_difference_interval():
    from carlink.replay.sweep_stats import bootstrap_difference_pp

    def tot(u: float) -> PolicyTotals:
        return PolicyTotals(u * 10, 10.0, 10, 10, 0, 0, 0, 0, 0, 0, 0, 1)

    base = [0.1, 0.5, 0.2, 0.4, 0.3, 0.3, 0.05, 0.55]
    # Always 1 pp ahead on the same replays: the paired interval is tight although each policy's
    # own interval is wide.
    point, low, high = bootstrap_difference_pp([tot(u + 0.01) for u in base], [tot(u) for u in base])
    assert point == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)
    point, low, high = bootstrap_difference_pp([tot(u) for u in base], [tot(u) for u in reversed(base)])
    assert point == pytest.approx(0.0) and low < 0 < high
