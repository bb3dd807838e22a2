"""`carlink profile run/show` on real frames: payloads are the encoder's bytes, utilities are the
metric's (one class for HOG, the mean over the classes present for the Darknet detectors), the
file round-trips and validates, an interrupted run resumes to the same bytes, one measured task is
written under several cameras, runtime tables come in both layouts, and the shipped profiles are
what they say.

Kept quick: the cheap HOG variant and the smallest Darknet variants on two or three 640x640
frames of the busy downtown TF-Example sequence.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from carlink.cli import CommandError
from carlink.datasets.scene import read_frames
from carlink.detection import WaymoClass
from carlink.onboard.encoder import encode_image
from carlink.onboard.pipeline import encode_spec
from carlink.profile import ProfileError, load_profile, parse_profile
from carlink.replay.evaluation import Label, frame_ap, match_frame, set_ap
from carlink.replay.profile_cli import register_profile
from carlink.replay.profiling import (
    ProfileConfig,
    ProfilerError,
    ProfilingStopped,
    RuntimeTable,
    checkpoint_path,
    format_options,
    load_frames,
    parse_cameras,
    parse_classes,
    parse_options,
    parse_tasks,
    run_profile,
    select_tasks,
)
from carlink.tasks import Option
from carlink.zoo.registry import get_model, list_specs

MODEL = "hog-default-fast"
BUSY = "segment-10023947602400723454_1120_000_1140_000_with_camera_labels.tfrecord"


@pytest.fixture(scope="module")
def busy_scene(tf_example_files) -> str:
    [path] = [p for p in tf_example_files if p.name == BUSY]
    return str(path)


def _config(scene: str, **kw) -> ProfileConfig:
    transports = parse_options(kw.pop("options", "native,x0.5,jpeg50,png"))
    base = dict(scenes=(scene,), models=(MODEL,), onboard=MODEL, transports=transports,
                tasks=("FRONT",), window_frames=2, max_frames=3)
    base.update(kw)
    return ProfileConfig(**base)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="carlink")
    register_profile(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def measured(busy_scene, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("profile") / "profile.json"
    profile, result = run_profile(_config(busy_scene), out, progress_bar=False)
    assert result.measured == 3 * (1 + 4) and result.reused == 0
    return out, json.loads(out.read_text())


def test_option_and_task_parsing():
    crossed = parse_options("native, x0.5, 960x640, jpeg75, JPEG95, png, raw")
    assert len(crossed) == 3 * 4 and [t.label for t in crossed[:5]] == [
        "native:jpeg75", "native:jpeg95", "native:png", "native:raw", "x0.5:jpeg75"]
    assert [(t.codec.codec, t.codec.jpeg_quality) for t in crossed[:4]] == [
        ("jpeg", 75), ("jpeg", 95), ("png", None), ("raw", None)]
    assert crossed[4].resize.target(1920, 886) == (960, 443) and crossed[0].resize.target(640, 640) is None
    assert [t.label for t in parse_options("jpeg90")] == ["native:jpeg90"]  # no resize item: as captured
    # TURBO's grid: pairs, not crossed; 'input' is the model's own input size
    turbo = parse_options("input:jpeg50, input:JPEG90,input:png,native:jpeg90")
    assert [t.label for t in turbo] == ["input:jpeg50", "input:jpeg90", "input:png", "native:jpeg90"]
    assert turbo[0].resize.target(640, 640, (320, 320)) == (320, 320)
    assert turbo[0].resize.target(640, 640, (640, 640)) is None  # already the input size: sent as is
    mixed = parse_options("x0.5,png,input:jpeg50")  # crossed items first, then the pairs
    assert [t.label for t in mixed] == ["x0.5:png", "input:jpeg50"]
    for text in ("native,x0.5,jpeg50,png", "input:jpeg50,input:png,native:jpeg90", "x0.5,png,input:jpeg50"):
        assert parse_options(format_options(parse_options(text))) == parse_options(text)
    assert format_options(parse_options("native,x0.5,jpeg50,png")) == "native,x0.5,jpeg50,png"
    for bad, words in [("x1.5,png", "scale must be in (0, 1]"), ("jpeg101", "1-100"), ("x0.5", "names no codec"),
                       ("webp", "neither a resize target"), ("png,png", "png twice"),
                       ("input:webp", "a pair is RESIZE:CODEC"), ("png:input", "a pair is RESIZE:CODEC"),
                       ("native,png,native:png", "option native:png twice")]:
        with pytest.raises(ProfilerError, match=None) as info:
            parse_options(bad)
        assert words in str(info.value)
    assert parse_tasks("all") is None and parse_tasks("front,FRONT_LEFT") == ("FRONT", "FRONT_LEFT")
    with pytest.raises(ProfilerError, match="unknown camera 'BACK'"):
        parse_tasks("FRONT,BACK")
    assert parse_tasks("front@640x640") == ("FRONT@640x640",)


def test_a_camera_seen_at_two_sizes_makes_two_tasks_unless_one_is_chosen(waymo_frame_file, busy_scene):
    def tasks(spec: str | None):
        cfg = _config(str(waymo_frame_file), tasks=parse_tasks(spec) if spec else None, max_frames=1)
        cfg = ProfileConfig(**{**cfg.__dict__, "scenes": (str(waymo_frame_file), busy_scene)})
        return select_tasks(cfg.tasks, load_frames(cfg.scenes, cfg.max_frames), (WaymoClass.PEDESTRIAN,))

    keys, skipped = tasks(None)  # the 5-camera frame (1920 wide) and a 640x640 FRONT sequence
    assert [k.name for k in keys] == ["FRONT@1920x1280", "FRONT@640x640", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_RIGHT"]
    assert skipped == ["SIDE_LEFT"] and keys[1].size == (640, 640)
    keys, _ = tasks("FRONT@640x640,FRONT_RIGHT")
    assert [(k.name, k.size) for k in keys] == [("FRONT", (640, 640)), ("FRONT_RIGHT", (1920, 1280))]
    with pytest.raises(ProfilerError, match="no FRONT image of 100x100 in the scenes \\(they hold 1920x1280, 640x640\\)"):
        tasks("FRONT@100x100")


def test_payloads_are_the_encoders_bytes(measured, busy_scene):
    out, doc = measured
    [task] = doc["tasks"]
    frames = list(read_frames(busy_scene))[:3]
    assert [f["id"] for f in task["frames"]] == [f"{fr.context_name}#{fr.frame_index}" for fr in frames]
    for opt in task["options"]:
        # the car encodes exactly what the profile says: its resize target, codec and quality
        car = Option(id=opt["id"], utility=0.0, payload_bytes=1.0, model=opt["model"],
                     resize=tuple(opt["resize"]) if opt.get("resize") else None, codec=opt["codec"],
                     jpeg_quality=opt.get("jpeg_quality"))
        sizes = [len(encode_image(fr.image(1).decode(), encode_spec(car)).payload) for fr in frames]
        assert opt["payloads"] == sizes, opt["id"]
        assert opt["payload_bytes_mean"] == pytest.approx(np.mean(sizes), abs=0.05)
        assert opt["payload_bytes_p95"] == pytest.approx(np.percentile(sizes, 95), abs=0.05)
    by_id = {o["id"]: o for o in task["options"]}
    assert by_id[f"{MODEL}-x0.5-png"]["resize"] == [320, 320] and by_id[f"{MODEL}-native-png"].get("resize") is None
    # PNG is lossless and bigger than JPEG 50 at the same size
    assert by_id[f"{MODEL}-native-png"]["payload_bytes_mean"] > 3 * by_id[f"{MODEL}-native-jpeg50"]["payload_bytes_mean"]


def test_utilities_are_pedestrian_ap_of_the_real_detector(measured, busy_scene):
    _, doc = measured
    [task] = doc["tasks"]
    model = get_model(MODEL)
    frames = list(read_frames(busy_scene))[:3]
    expected = []
    for fr in frames:
        labels = [Label(lab.box, lab.type) for lab in fr.labels[1]]
        res = frame_ap(labels, model.detect(fr.image(1).decode()), classes=(WaymoClass.PEDESTRIAN,))
        expected.append(round(res.mean, 6))
        assert res.n_labels[WaymoClass.PEDESTRIAN] > 0
    assert task["on_car"]["utilities"] == expected
    assert [f["labels"] for f in task["frames"]] == [
        sum(1 for lab in fr.labels[1] if lab.type == WaymoClass.PEDESTRIAN) for fr in frames]
    # the decoded native PNG is the original image: the same detector finds the same boxes
    assert next(o for o in task["options"] if o["id"] == f"{MODEL}-native-png")["utilities"] == expected
    assert task["windows"] == [[0, 2], [2, 3]]
    for opt in [task["on_car"], *task["options"]]:
        assert len(opt["window_utilities"]) == 2 and 0 <= opt["utility"] <= 1
        assert opt["runtime_ms_p99"] >= opt["runtime_ms_p50"] > 0
    assert doc["provenance"]["runtime"]["kind"] == "measured"
    assert doc["provenance"]["data"][0]["sha256"] and "--max-frames 3" in doc["provenance"]["command"]


def test_profile_round_trips_and_serves_the_allocator(measured):
    out, doc = measured
    profile = load_profile(out)
    assert profile.version == 2 and profile.provenance.on_car_model == MODEL
    again = out.with_name("again.json")
    again.write_text(profile.to_json())
    assert load_profile(again) == profile
    [task] = profile.to_tasks()
    assert task.name == "FRONT" and len(task.options) == 5 and task.on_car.model == MODEL
    tp = profile.tasks[0]
    frame1 = tp.frame_utilities(1)
    assert frame1["on-car"] == doc["tasks"][0]["on_car"]["utilities"][1] and len(frame1) == 5
    assert tp.window_index(2) == 1 and tp.window_index(3) is None


def _error(raw) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(raw, "p.json")
    return str(info.value)


def test_corrupt_or_wrong_version_profile_is_refused(measured, tmp_path):
    out, doc = measured
    raw = json.loads(out.read_text())
    assert "version 7 is not supported" in _error({**raw, "version": 7})
    bad = json.loads(out.read_text())
    bad["tasks"][0]["options"][2]["utilities"].pop()
    msg = _error(bad)
    assert "tasks[0] 'FRONT'" in msg and bad["tasks"][0]["options"][2]["id"] in msg
    assert "utilities has 2 values for 3 frames" in msg
    bad = json.loads(out.read_text())
    bad["tasks"][0]["windows"][1] = [2, 9]
    assert "windows[1] = [2, 9] is not a range inside the 3 frames" in _error(bad)
    bad = json.loads(out.read_text())
    bad["tasks"][0]["on_car"]["utilities"][0] = 1.5
    assert "utilities[0] = 1.5 is outside the utility range" in _error(bad)
    bad = json.loads(out.read_text())
    bad["provenance"]["comand"] = "typo"
    assert "provenance.comand: unknown key" in _error(bad)
    cut = tmp_path / "cut.json"
    cut.write_text(out.read_text()[:500])
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(cut)


def _table(tmp_path: Path) -> Path:
    path = tmp_path / "runtimes.csv"
    path.write_text("# hardware figures for the test\nmodel,resize,runtime_ms_p50,runtime_ms_p99\n"
                    f"{MODEL},native,20,31.5\n{MODEL},*,6,9\n")
    return path


def test_resume_gives_the_same_file_as_an_uninterrupted_run(busy_scene, tmp_path):
    table = _table(tmp_path)
    out = tmp_path / "p.json"
    argv = ["profile", "run", busy_scene, "--tasks", "FRONT", "--models", MODEL, "--onboard", MODEL,
            "--options", "x0.5,x0.25,jpeg75,png", "--max-frames", "2", "--runtime-table", str(table),
            "-o", str(out), "--no-progress"]
    assert _cli(argv) == 0
    clean = out.read_bytes()
    assert not checkpoint_path(out).exists()  # removed once the profile is written
    out.unlink()
    # interrupted after 4 of the 2 x (1 + 4) measurements, then resumed
    assert _cli(argv + ["--stop-after", "4"]) == 3
    assert not out.exists() and len(checkpoint_path(out).read_text().splitlines()) == 1 + 4
    _, result = run_profile(_config(busy_scene, options="x0.5,x0.25,jpeg75,png", max_frames=2, window_frames=5),
                            out, resume=True, table=RuntimeTable.load(table), progress_bar=False)
    assert (result.measured, result.reused) == (6, 4)
    assert out.read_bytes() == clean
    doc = json.loads(clean)
    opt = doc["tasks"][0]["options"][0]
    assert (opt["runtime_ms_p50"], opt["runtime_ms_p99"]) == (6.0, 9.0)
    assert doc["tasks"][0]["on_car"]["runtime_ms_p99"] == 31.5
    assert doc["provenance"]["runtime"]["kind"] == "table" and "--resume" not in doc["provenance"]["command"]


def test_resume_refuses_other_settings_and_survives_a_cut_line(busy_scene, tmp_path):
    out = tmp_path / "p.json"
    cfg = _config(busy_scene, options="x0.25,jpeg75", max_frames=2)
    with pytest.raises(ProfilingStopped):
        run_profile(cfg, out, stop_after=3, progress_bar=False)
    with pytest.raises(ProfilerError, match=r"different settings \(options\)"):
        run_profile(_config(busy_scene, options="x0.25,jpeg90", max_frames=2), out, resume=True, progress_bar=False)
    ckpt = checkpoint_path(out)
    lines = ckpt.read_text().splitlines(keepends=True)
    ckpt.write_text("".join(lines[:-1]) + lines[-1][:20])  # the interruption cut the last line
    _, result = run_profile(cfg, out, resume=True, progress_bar=False)
    assert (result.measured, result.reused) == (2, 2)
    ckpt.write_text("not a checkpoint\n")
    with pytest.raises(ProfilerError, match="line 1: not a carlink profile checkpoint"):
        run_profile(cfg, out, resume=True, progress_bar=False)


def test_runtime_table_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("model,runtime\nx,1\n")
    with pytest.raises(ProfilerError, match="header must be model,resize,runtime_ms_p50,runtime_ms_p99"):
        RuntimeTable.load(path)
    path.write_text("model,resize,runtime_ms_p50,runtime_ms_p99\nm,native,5,4\n")
    with pytest.raises(ProfilerError, match="row 2: need 0 <= runtime_ms_p50 <= runtime_ms_p99"):
        RuntimeTable.load(path)
    path.write_text("model,resize,runtime_ms_p50,runtime_ms_p99\nm,native,5,6\n")
    with pytest.raises(ProfilerError, match="no row for model m at resize x0.5"):
        RuntimeTable.load(path).lookup("m", "x0.5")


def test_label_free_camera_is_skipped_or_refused(waymo_frame_file, tmp_path):
    # SIDE_LEFT of the real 5-camera frame has no pedestrian label: its AP is undefined
    cfg = _config(str(waymo_frame_file), tasks=("SIDE_LEFT",), options="x0.1,jpeg50")
    with pytest.raises(ProfilerError, match="task SIDE_LEFT: no frame has a pedestrian label"):
        run_profile(cfg, tmp_path / "p.json", progress_bar=False)
    with pytest.raises(CommandError, match="unknown model 'nope'"):
        _cli(["profile", "run", str(waymo_frame_file), "--models", "nope", "-o", str(tmp_path / "q.json")])


def test_show_prints_staircases_and_plots(measured, tmp_path, capsys):
    out, doc = measured
    png = tmp_path / "stairs.png"
    assert _cli(["profile", "show", str(out), "--rtt", "30", "--deadline", "150", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "task FRONT" in text and "on-car" in text and "RTT 30 ms" in text and "deadline 150 ms" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every printed cloud step's b_c is TURBO's formula on the profile's p95 payload and p99 runtime
    opts = {o["id"]: o for o in doc["tasks"][0]["options"]}
    rows = [ln.split() for ln in text.splitlines() if ln.strip().split(" ")[-1] in opts]
    for bc, _, payload, runtime, oid in rows:
        o = opts[oid]
        assert float(bc) == pytest.approx(8 * o["payload_bytes_p95"] / ((150 - 30 - o["runtime_ms_p99"]) / 1000) / 1e6,
                                          abs=1e-3)
    with pytest.raises(CommandError, match="cannot read profile"):
        _cli(["profile", "show", str(tmp_path / "missing.json")])
    # wired into the real `carlink` command line (replay/cli.py registers it)
    from carlink.cli import main

    assert main(["profile", "show", str(out), "--payload", "mean", "--runtime", "p50"]) == 0
    assert "payload mean, runtime p50" in capsys.readouterr().out
    assert main(["profile", "show", str(tmp_path / "missing.json")]) == 2


FIVE_CAMERAS = ["FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
TURBO_TRANSPORTS = {("input", "jpeg", 50), ("input", "jpeg", 90), ("input", "png", None), ("native", "jpeg", 90)}


def _shipped(path: Path, data_dir: Path, sequences: list[Path]):
    """A shipped profile: the Darknet grid measured on exactly ``sequences``, five camera slots."""
    import hashlib

    profile = load_profile(path)
    prov = profile.provenance
    assert profile.version == 2 and prov.command.startswith("carlink profile run ")
    assert prov.on_car_model == "yolo-fastest-1.1-320x320"
    assert set(prov.cloud_models) == {s.name for s in list_specs() if s.family == "darknet"} - {prov.on_car_model}
    assert profile.metric == "AP50 (mean over vehicle, pedestrian present)"
    assert [Path(src["path"]).name for src in prov.data] == [p.name for p in sequences]
    for src in prov.data:  # the very files of shared/data, by content
        local = data_dir / src["path"].split("shared/data/", 1)[1]
        assert hashlib.sha256(local.read_bytes()).hexdigest() == src["sha256"], src["path"]
    assert sum(src["frames"] for src in prov.data) == 20 * len(sequences)
    assert prov.runtime["hardware"]  # runtimes say what they were measured on
    # one task measured once, written as the five cameras of a composed car
    assert [(t.name, t.camera) for t in profile.tasks] == [(c, c) for c in FIVE_CAMERAS]
    front = profile.tasks[0]
    assert all(t.model_copy(update={"name": "FRONT", "camera": "FRONT"}) == front for t in profile.tasks)
    assert front.image_size == (640, 640) and len(front.frames) == 20 * len(sequences)
    assert front.classes == ["vehicle", "pedestrian"] and front.deadline_ms == 500
    assert prov.runtime["kind"] == "table" and prov.runtime["path"] == "carlink/profiles/runtimes-cpu.csv"
    assert 40 <= len(front.options) <= 60
    assert {(o.resize_rule, o.codec, o.jpeg_quality) for o in front.options} == TURBO_TRANSPORTS
    assert profile.to_tasks()  # the allocator can use it
    return profile


def test_shipped_default_profile_is_real_and_says_where_it_came_from(data_dir, tf_example_files):
    from carlink.profile import DEFAULT_PROFILE

    profile = _shipped(DEFAULT_PROFILE, data_dir, tf_example_files[:15])
    front = profile.tasks[0]
    # a real staircase: the on-car model is the floor, larger cloud models at larger inputs climb
    assert 0.05 < front.on_car.utility < 0.3
    best = max(front.options, key=lambda o: o.utility)
    assert best.utility > front.on_car.utility + 0.05 and best.model.endswith(("640x640", "960x640"))
    by_id = {o.id: o for o in front.options}
    for net in ("yolo-fastest-1.1-xl", "mobilenetv2-yolov3-nano"):
        assert by_id[f"{net}-320x320-input-png"].utility < by_id[f"{net}-640x640-input-png"].utility
        assert by_id[f"{net}-320x320-input-jpeg50"].payload_bytes_mean < by_id[f"{net}-640x640-input-jpeg50"].payload_bytes_mean
    assert "evaluation.json" in profile.description and "deadline" in profile.description
    # cyclist is left out: 3 labels in the 300 profiling frames, and the description says why
    assert "3 cyclist labels" in profile.description


def test_evaluation_profile_holds_the_other_sequences(data_dir, tf_example_files):
    from carlink.profile import DEFAULT_PROFILE, EVALUATION_PROFILE

    evaluation = _shipped(EVALUATION_PROFILE, data_dir, tf_example_files[15:])
    assert "must not be used to plan" in evaluation.description
    default = load_profile(DEFAULT_PROFILE)
    # the same grid measured the same way, on frames the default profile never saw
    assert [o.id for o in evaluation.tasks[0].options] == [o.id for o in default.tasks[0].options]
    assert not {f.id for f in evaluation.tasks[0].frames} & {f.id for f in default.tasks[0].frames}


# --- several classes, TURBO's grid, camera slots, bench tables ------------------------------------

ON_CAR_CNN = "yolo-fastest-1.1-320x320"
CLOUD_CNN = "yolo-fastest-1.1-416x416"


@pytest.fixture(scope="module")
def cnn_profile(busy_scene, tmp_path_factory):
    """The real Darknet detectors (vehicle, pedestrian, cyclist) on two busy downtown frames,
    TURBO's transports, written as three camera slots."""
    out = tmp_path_factory.mktemp("cnn") / "cnn.json"
    cfg = _config(busy_scene, models=(CLOUD_CNN,), onboard=ON_CAR_CNN, options="input:png,native:jpeg90",
                  max_frames=2, as_cameras=("FRONT", "SIDE_LEFT", "SIDE_RIGHT"), backend="opencv")
    profile, result = run_profile(cfg, out, progress_bar=False)
    assert (result.measured, result.reused) == (2 * 3, 0)
    return profile


def test_utility_is_the_mean_ap_over_the_classes_present(cnn_profile, busy_scene):
    classes = (WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST)
    assert cnn_profile.metric == "AP50 (mean over vehicle, pedestrian, cyclist present)"
    task = cnn_profile.tasks[0]
    assert task.classes == ["vehicle", "pedestrian", "cyclist"]
    frames = list(read_frames(busy_scene))[:2]
    model = get_model(ON_CAR_CNN, backend="opencv")
    matches = []
    for k, fr in enumerate(frames):
        labels = [Label(lab.box, lab.type) for lab in fr.labels[1]]
        dets = model.detect(fr.image(1).decode())
        res = frame_ap(labels, dets, classes)
        assert len(res.per_class) >= 2  # the busy scene has vehicles and pedestrians in every frame
        assert task.on_car.utilities[k] == pytest.approx(np.mean(list(res.per_class.values())), abs=1e-6)
        assert task.frames[k].labels == sum(1 for lab in fr.labels[1] if lab.type in classes)
        matches.append(match_frame(labels, dets, classes))
    # the aggregate: per class AP of the pooled detections, then the mean over classes with labels
    pooled = set_ap(matches)
    assert task.on_car.utility == pytest.approx(np.mean(list(pooled.per_class.values())), abs=1e-6)
    assert task.on_car.utility != pytest.approx(np.mean(task.on_car.utilities), abs=1e-6)


def test_input_resize_is_the_models_input_size(cnn_profile):
    by_id = {o.id: o for o in cnn_profile.tasks[0].options}
    assert set(by_id) == {f"{CLOUD_CNN}-input-png", f"{CLOUD_CNN}-native-jpeg90"}
    assert by_id[f"{CLOUD_CNN}-input-png"].resize == (416, 416) and by_id[f"{CLOUD_CNN}-native-jpeg90"].resize is None
    assert by_id[f"{CLOUD_CNN}-input-png"].resize_rule == "input"
    # the model sees its input size either way: the native JPEG differs only by compression
    for o in by_id.values():
        assert 0 < o.utility <= 1
    with pytest.raises(ProfilerError, match="model hog-default-fast has no fixed input size"):
        _config("x", options="input:png").options()


def test_one_measured_task_is_written_under_each_camera(cnn_profile):
    names = [(t.name, t.camera) for t in cnn_profile.tasks]
    assert names == [("FRONT", "FRONT"), ("SIDE_LEFT", "SIDE_LEFT"), ("SIDE_RIGHT", "SIDE_RIGHT")]
    first = cnn_profile.tasks[0]
    for t in cnn_profile.tasks[1:]:  # measured once: the same frames (by frame id) and numbers
        assert t.model_copy(update={"name": "FRONT", "camera": "FRONT"}) == first
    assert "--as-cameras FRONT,SIDE_LEFT,SIDE_RIGHT" in cnn_profile.provenance.command
    assert cnn_profile.to_tasks()[2].camera == "SIDE_RIGHT"
    with pytest.raises(ProfilerError, match="--as-cameras names FRONT twice"):
        parse_cameras("FRONT,front")
    with pytest.raises(ProfilerError, match="unknown camera 'BACK'"):
        parse_cameras("FRONT,BACK")


def test_as_cameras_needs_exactly_one_measured_task(waymo_frame_file, tmp_path):
    cfg = _config(str(waymo_frame_file), tasks=("FRONT", "FRONT_LEFT"), options="x0.1,jpeg50",
                  as_cameras=("FRONT", "SIDE_LEFT"))
    with pytest.raises(ProfilerError, match="2 tasks were selected \\(FRONT, FRONT_LEFT\\); choose one with --tasks"):
        run_profile(cfg, tmp_path / "p.json", progress_bar=False)


BENCH = """model,resize,runtime_ms_p50,runtime_ms_p99,batch,backend,device,hardware,images_per_s
{m},*,6,9,1,opencv,cpu,Test CPU (2 cores),160
{m},*,30,41,8,opencv,cpu,Test CPU (2 cores),260
{m},*,7,10,1,torch,cpu,Test CPU (2 cores),140
"""


def test_runtime_table_as_models_bench_writes_it(busy_scene, tmp_path):
    path = tmp_path / "bench.csv"
    path.write_text(BENCH.format(m=MODEL))
    with pytest.raises(ProfilerError, match="listed twice \\(several backends or devices: pick one with --runtime-backend\\)"):
        RuntimeTable.load(path)
    table = RuntimeTable.load(path, backend="opencv")  # batch-1 rows only; extra columns ignored
    assert table.lookup(MODEL, "x0.5") == table.lookup(MODEL, "native") and table.lookup(MODEL, "native").p99 == 9
    assert table.hardware() == ["Test CPU (2 cores)"]
    out = tmp_path / "p.json"
    argv = ["profile", "run", busy_scene, "--tasks", "FRONT", "--models", MODEL, "--onboard", MODEL,
            "--options", "x0.25,jpeg75", "--max-frames", "1", "--runtime-table", str(path),
            "--runtime-backend", "torch", "-o", str(out), "--no-progress"]
    assert _cli(argv) == 0
    profile = load_profile(out)
    assert profile.provenance.runtime["hardware"] == ["Test CPU (2 cores)"]
    assert (profile.tasks[0].options[0].runtime_ms_p50, profile.tasks[0].on_car.runtime_ms_p99) == (7.0, 10.0)
    assert "--runtime-backend torch" in profile.provenance.command
    path.write_text(BENCH.format(m=MODEL).replace(",1,opencv", ",one,opencv"))
    with pytest.raises(ProfilerError, match="row 2: batch must be a whole number, got 'one'"):
        RuntimeTable.load(path)
    with pytest.raises(CommandError, match="--runtime-backend needs --runtime-table"):
        _cli(argv[:argv.index("--runtime-table")] + ["--runtime-backend", "torch", "-o", str(out)])


def test_measured_runtimes_name_the_hardware(measured):
    _, doc = measured
    assert doc["provenance"]["runtime"]["hardware"].endswith(" CPUs")


def test_classes_are_chosen_when_assembling(busy_scene, tmp_path):
    out = tmp_path / "p.json"
    cfg = _config(busy_scene, models=(CLOUD_CNN,), onboard=ON_CAR_CNN, options="input:jpeg90", max_frames=1,
                  backend="opencv")
    every, first = run_profile(cfg, out, progress_bar=False, keep_checkpoint=True)
    # every detected class is measured; --classes picks what utility averages over, no new run
    vehicles, again = run_profile(ProfileConfig(**{**cfg.__dict__, "utility_classes": (WaymoClass.VEHICLE,)}),
                                  out, resume=True, progress_bar=False)
    assert (first.measured, again.measured, again.reused) == (2, 0, 2)
    assert every.metric.startswith("AP50 (mean over") and vehicles.metric == "AP50 (vehicle)"
    [fr] = list(read_frames(busy_scene))[:1]
    labels = [Label(lab.box, lab.type) for lab in fr.labels[1]]
    dets = get_model(ON_CAR_CNN, backend="opencv").detect(fr.image(1).decode())
    assert vehicles.tasks[0].on_car.utilities == [round(frame_ap(labels, dets, (WaymoClass.VEHICLE,)).mean, 6)]
    assert vehicles.tasks[0].classes == ["vehicle"] and "--classes vehicle" in vehicles.provenance.command
    assert vehicles.tasks[0].frames[0].labels == sum(1 for lab in fr.labels[1] if lab.type == WaymoClass.VEHICLE)
    assert parse_classes("Vehicle, pedestrian") == (WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN)
    for bad, words in [("sign", "unknown class 'sign'"), ("vehicle,vehicle", "vehicle twice"), (",", "no class")]:
        with pytest.raises(ProfilerError, match=words):
            parse_classes(bad)
    with pytest.raises(ProfilerError, match="--classes vehicle: no model of the profile detects it"):
        _config(busy_scene, utility_classes=(WaymoClass.VEHICLE,)).evaluated()  # HOG: pedestrians only
