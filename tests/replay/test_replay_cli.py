"""`carlink replay`: the built-in synthetic demonstration, a real scene over a real trace, errors."""

from __future__ import annotations

import json

from carlink.cli import main


def test_demo_runs_offline_and_is_labelled_synthetic(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["replay", "-o", str(out), "--max-frames", "60", "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "SYNTHETIC" in printed.out and "SYNTHETIC" in printed.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["synthetic"] is True
    assert "SYNTHETIC" in summary["inputs"]["scenes"] and "SYNTHETIC" in summary["inputs"]["trace_file"]
    assert set(summary["policies"]) == {"carlink", "turbo", "on-car", "single-cloud", "oracle",
                                        "carlink-link", "carlink-utility"}
    assert summary["policies"]["on-car"]["bytes_sent"] == 0
    assert "SYNTHETIC DEMONSTRATION" in (out / "report.html").read_text()
    for png in ("capacity.png", "options.png", "utility.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_scene_over_real_trace(tmp_path, tf_example_files, bandwidth_dir, capsys):
    out = tmp_path / "real"
    trace = bandwidth_dir / "nuwins_5g_uplink" / "driving" / "5g" / "throughput.list"
    code = main(["replay", str(tf_example_files[1]), "--trace", str(trace), "--trace-format", "nuwins",
                 "--scale", "0.5", "--trace-offset", "600", "--utilities", "profile", "--max-frames", "10",
                 "--policies", "carlink,turbo,oracle,on-car", "-o", str(out), "--no-progress", "--no-report"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["synthetic"] is False
    assert set(summary["policies"]) == {"carlink", "turbo", "oracle", "on-car"}
    details = json.loads((out / "results.json").read_text())
    assert len(details["policies"]["carlink"]["tasks"]) == 10  # FRONT on each of 10 frames
    printed = capsys.readouterr().out
    assert "carlink" in printed
    # The realistic bandwidth knowledge is the default, and the output says so.
    assert summary["inputs"]["estimates"].startswith("uploads") and "bandwidth estimates: uploads" in printed
    code = main(["replay", str(tf_example_files[1]), "--trace", str(trace), "--trace-format", "nuwins",
                 "--estimates", "trace", "--utilities", "profile", "--max-frames", "3", "--policies", "turbo",
                 "-o", str(out), "--no-progress", "--no-report"])
    assert code == 0 and "bandwidth estimates: trace" in capsys.readouterr().out


def test_errors_name_what_was_wrong(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nope.tfrecord"), "--no-progress", "-o", str(tmp_path)]) == 2
    assert "nope.tfrecord" in capsys.readouterr().err
    assert main(["replay", "--trace", str(tmp_path / "missing.up"), "--no-progress", "-o", str(tmp_path)]) == 2
    assert "missing.up" in capsys.readouterr().err
    assert main(["replay", "--cloud", "127.0.0.1:1", "--no-progress", "-o", str(tmp_path)]) == 2
    assert "--clock wall" in capsys.readouterr().err


def test_help_describes_the_policies(capsys):
    try:
        main(["replay", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    text = capsys.readouterr().out
    for word in ("carlink", "turbo", "on-car", "single-cloud", "oracle", "--trace", "--clock", "SYNTHETIC"):
        assert word in text
