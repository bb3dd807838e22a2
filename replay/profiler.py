"""Measure a profile on real frames: what each cloud option of each task is worth and costs.

For every task (one camera at one native image size, served by one model family) and every frame
that has an image of it, the profiler

1. decodes the camera image and runs the **on-car** model on it (utility and runtime);
2. for every resize target x codec: resizes and encodes the image with the car's own encoder
   (:func:`carlink.onboard.encoder.encode_image` with :func:`carlink.onboard.pipeline.encode_spec`,
   so payload sizes are the bytes the car would send), then decodes the payload with the cloud's
   own decoder (:func:`carlink.cloud.decode.decode`);
3. runs every **cloud** model on the decoded image, scales its boxes back to the original pixels,
   and matches them against the frame's labels (:func:`carlink.replay.evaluation.match_frame`).

Utility is AP at IoU 0.5 over the classes the models detect (the OpenCV HOG detectors find
pedestrians only, so for them it is *pedestrian AP*). Per frame it is the frame's AP, ``None``
for a frame without a label of those classes (``EmptyFrameRule.EXCLUDE``, see evaluation.py) or
the TURBO convention when asked. The task-level aggregate, and each window's, pools the matches
of all its frames as COCO pools images (:func:`carlink.replay.evaluation.set_ap`).

Runtime of a cloud option is decode + detect on this machine (the cloud's critical path), of the
on-car model detect only; p50 and p99 over frames. A :class:`RuntimeTable` replaces the measured
runtimes with figures for other hardware.

Every measurement is appended to a JSONL checkpoint as soon as it is made; a resumed run reads
it back and measures only what is missing. The profile is assembled from the checkpoint in a
fixed order, so an interrupted-and-resumed run gives the same file as an uninterrupted one
(byte for byte when runtimes come from a table; measured runtimes differ run to run).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from carlink import __version__ as carlink_version
from carlink.cloud.decode import DecodeLimits, decode
from carlink.datasets.frames import CameraName, Frame
from carlink.datasets.scene import detect_scene_format, read_frames
from carlink.detection import Detection, WaymoClass
from carlink.onboard.encoder import encode_image
from carlink.onboard.pipeline import encode_spec
from carlink.proto import inference_pb2 as pb
from carlink.replay.evaluation import (
    ClassMatches,
    EmptyFrameRule,
    FrameMatches,
    Label,
    match_frame,
    set_ap,
)
from carlink.tasks import Option
from carlink.zoo.base import Detector
from carlink.zoo.registry import get_model, get_spec

log = logging.getLogger("carlink.replay.profiler")

CHECKPOINT_FORMAT = "carlink.profile-checkpoint"
CHECKPOINT_VERSION = 1
ON_CAR_ID = "on-car"
DEFAULT_OPTIONS = "native,x0.75,x0.5,jpeg50,jpeg75,jpeg90,jpeg95,png"
_DECODE_LIMITS = DecodeLimits(max_payload_bytes=1 << 30, max_pixels=1 << 28, max_side=1 << 15)
_PB_ENCODING = {"jpeg": pb.ENCODING_JPEG, "png": pb.ENCODING_PNG, "raw": pb.ENCODING_RAW_BGR}


class ProfilerError(ValueError):
    """Bad profiler input: an option spec, a task name, a runtime table, a checkpoint."""


class ProfilingStopped(RuntimeError):
    """Raised after ``stop_after`` new measurements (to test and demonstrate resuming)."""


# --- what to measure -------------------------------------------------------------------------


@dataclass(frozen=True)
class ResizeSpec:
    """A resize target: ``native`` (as captured), ``x0.5`` (scale of each frame), ``960x640``."""

    label: str
    scale: float | None = None
    size: tuple[int, int] | None = None

    def target(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) an image of this size is resized to; None keeps it as is."""
        if self.size is not None:
            return None if self.size == (width, height) else self.size
        if self.scale is None or self.scale == 1.0:
            return None
        return (max(1, round(width * self.scale)), max(1, round(height * self.scale)))


@dataclass(frozen=True)
class CodecSpec:
    """``jpeg<q>`` (quality 1-100), ``png`` or ``raw`` (uncompressed BGR)."""

    label: str
    codec: str
    jpeg_quality: int | None = None


_RESIZE_SCALE = re.compile(r"^x(\d+(?:\.\d+)?)$")
_RESIZE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_JPEG = re.compile(r"^jpe?g(\d{1,3})$")


def parse_options(text: str) -> tuple[tuple[ResizeSpec, ...], tuple[CodecSpec, ...]]:
    """Parse ``--options``: comma-separated resize targets and codecs, crossed with each other.

    Resize items: ``native``, ``x<scale>`` (0 < scale <= 1, of each frame's own size) or
    ``<width>x<height>``. Codec items: ``jpeg<quality>``, ``png``, ``raw``. At least one codec;
    no resize item means ``native``.
    """
    resizes: list[ResizeSpec] = []
    codecs: list[CodecSpec] = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "native":
            resizes.append(ResizeSpec("native"))
        elif m := _RESIZE_SCALE.match(item):
            scale = float(m.group(1))
            if not 0 < scale <= 1:
                raise ProfilerError(f"--options item {raw.strip()!r}: a scale must be in (0, 1]")
            resizes.append(ResizeSpec(f"x{scale:g}", scale=scale))
        elif m := _RESIZE_SIZE.match(item):
            w, h = int(m.group(1)), int(m.group(2))
            if w < 1 or h < 1:
                raise ProfilerError(f"--options item {raw.strip()!r}: width and height must be >= 1")
            resizes.append(ResizeSpec(f"{w}x{h}", size=(w, h)))
        elif m := _JPEG.match(item):
            q = int(m.group(1))
            if not 1 <= q <= 100:
                raise ProfilerError(f"--options item {raw.strip()!r}: JPEG quality must be 1-100")
            codecs.append(CodecSpec(f"jpeg{q}", "jpeg", q))
        elif item in ("png", "raw"):
            codecs.append(CodecSpec(item, item))
        else:
            raise ProfilerError(
                f"--options item {raw.strip()!r} is neither a resize target (native, x0.5, 960x640) "
                "nor a codec (jpeg75, png, raw)")
    if not codecs:
        raise ProfilerError(f"--options {text!r} names no codec (jpeg<quality>, png or raw)")
    for kind, items in (("resize target", resizes), ("codec", codecs)):
        labels = [i.label for i in items]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ProfilerError(f"--options names the {kind} {dup[0]} twice")
    return tuple(resizes) or (ResizeSpec("native"),), tuple(codecs)


@dataclass(frozen=True)
class OptionSpec:
    model: str
    resize: ResizeSpec
    codec: CodecSpec

    @property
    def id(self) -> str:
        return f"{self.model}-{self.resize.label}-{self.codec.label}"


# --- runtime table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeTable:
    """Runtimes for other hardware, from a CSV file with a header row::

        model,resize,runtime_ms_p50,runtime_ms_p99
        hog-default,native,812.0,901.5
        hog-default,x0.5,230,260
        hog-default-fast,*,25,31

    ``resize`` is an option's resize label (``native``, ``x0.5``, ``960x640``) or ``*`` for any;
    the on-car model is looked up with ``native``. An exact row wins over ``*``. Lines starting
    with ``#`` are comments.
    """

    rows: dict[tuple[str, str], tuple[float, float]]
    source: str
    sha256: str

    @classmethod
    def load(cls, path: str | Path) -> "RuntimeTable":
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProfilerError(f"cannot read runtime table {path}: {exc.strerror or exc}") from None
        lines = [ln for ln in data.decode("utf-8", errors="replace").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        reader = csv.DictReader(lines)
        need = ["model", "resize", "runtime_ms_p50", "runtime_ms_p99"]
        if reader.fieldnames is None or [f.strip() for f in reader.fieldnames] != need:
            raise ProfilerError(f"{path}: the header must be {','.join(need)}, got {reader.fieldnames}")
        rows: dict[tuple[str, str], tuple[float, float]] = {}
        for i, row in enumerate(reader, start=2):
            key = (row["model"].strip(), row["resize"].strip().lower())
            try:
                p50, p99 = float(row["runtime_ms_p50"]), float(row["runtime_ms_p99"])
            except (TypeError, ValueError):
                raise ProfilerError(f"{path} row {i}: runtimes must be numbers, got {row}") from None
            if not (math.isfinite(p50) and math.isfinite(p99) and 0 <= p50 <= p99):
                raise ProfilerError(f"{path} row {i}: need 0 <= runtime_ms_p50 <= runtime_ms_p99, got {p50}, {p99}")
            if key in rows:
                raise ProfilerError(f"{path} row {i}: model {key[0]} resize {key[1]} is listed twice")
            rows[key] = (p50, p99)
        return cls(rows, str(path), hashlib.sha256(data).hexdigest())

    def lookup(self, model: str, resize: str) -> tuple[float, float]:
        for key in ((model, resize), (model, "*")):
            if key in self.rows:
                return self.rows[key]
        raise ProfilerError(f"runtime table {self.source} has no row for model {model} at resize {resize} "
                            f"(nor a '*' row for that model)")


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileConfig:
    """Everything that decides a profile's numbers (and so must match when resuming)."""

    scenes: tuple[str, ...]
    models: tuple[str, ...]
    onboard: str
    resizes: tuple[ResizeSpec, ...]
    codecs: tuple[CodecSpec, ...]
    tasks: tuple[str, ...] | None = None  # camera names; None: every camera with an image
    deadline_ms: float = 150.0
    weight: float = 1.0
    window_frames: int = 5
    empty_frames: EmptyFrameRule = EmptyFrameRule.EXCLUDE
    max_frames: int | None = None  # per scene file, the first N frames (for quick runs)
    description: str = ""

    def options(self) -> list[OptionSpec]:
        return [OptionSpec(m, r, c) for m in self.models for r in self.resizes for c in self.codecs]

    def fingerprint(self) -> dict[str, Any]:
        """The JSON-able identity of the measurements (not of how they are summarised)."""
        return {
            "scenes": list(self.scenes),
            "models": list(self.models),
            "onboard": self.onboard,
            "resizes": [r.label for r in self.resizes],
            "codecs": [c.label for c in self.codecs],
            "tasks": None if self.tasks is None else list(self.tasks),
            "max_frames": self.max_frames,
        }


_TASK = re.compile(r"^([A-Z_]+)(?:@(\d+)x(\d+))?$")


def parse_tasks(text: str) -> tuple[str, ...] | None:
    """``all`` or comma-separated cameras (FRONT, FRONT_LEFT, ...), each optionally narrowed to
    one native image size (``FRONT@640x640``) where the scenes hold the camera at several sizes."""
    if text.strip().lower() == "all":
        return None
    names = [t.strip().upper().replace("X", "x") if "@" in t else t.strip().upper()
             for t in text.split(",") if t.strip()]
    known = [c.name for c in CameraName if c is not CameraName.UNKNOWN]
    for n in names:
        m = _TASK.match(n)
        if m is None or m.group(1) not in known:
            raise ProfilerError(f"--tasks: unknown camera {n!r}; known cameras: {', '.join(known)} "
                                "(optionally CAMERA@WIDTHxHEIGHT), or 'all'")
    if not names:
        raise ProfilerError("--tasks names no camera")
    return tuple(dict.fromkeys(names))


# --- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameRef:
    """One frame of one scene file, with a stable id."""

    id: str
    scene: int  # index into ProfileConfig.scenes
    context: str
    frame: Frame


def load_frames(config: ProfileConfig) -> list[FrameRef]:
    out: list[FrameRef] = []
    seen: set[str] = set()
    for i, path in enumerate(config.scenes):
        if not Path(path).is_file():
            raise ProfilerError(f"scene file {path} does not exist")
        for n, frame in enumerate(read_frames(path)):
            if config.max_frames is not None and n >= config.max_frames:
                break
            fid = frame.stable_id
            if fid in seen:
                raise ProfilerError(f"{path}: frame {fid} appears twice among the scenes")
            seen.add(fid)
            out.append(FrameRef(fid, i, frame.context_name, frame))
    return out


@dataclass(frozen=True)
class TaskKey:
    """A task: one camera at one native image size (``FRONT``, or ``FRONT@640x640`` where the
    scenes hold that camera at several sizes: resize targets and runtimes depend on the size)."""

    name: str
    camera: CameraName
    size: tuple[int, int]  # (width, height) as captured

    def image_of(self, frame: Frame):
        im = frame.image(self.camera)
        return im if im is not None and (im.width, im.height) == self.size else None


def select_tasks(config: ProfileConfig, frames: Sequence[FrameRef], cls: WaymoClass) -> tuple[list[TaskKey], list[str]]:
    """The tasks to measure, and those skipped for want of any label of ``cls`` (``--tasks all``)."""
    sizes_of: dict[CameraName, list[tuple[int, int]]] = {}
    for f in frames:
        for im in f.frame.images:
            sizes_of.setdefault(im.camera, [])
            if (im.width, im.height) not in sizes_of[im.camera]:
                sizes_of[im.camera].append((im.width, im.height))
    for sizes in sizes_of.values():
        sizes.sort(key=lambda s: (-s[0] * s[1], s))  # largest first
    groups: list[tuple[CameraName, tuple[int, int]]] = []
    for entry in (config.tasks if config.tasks is not None else [c.name for c in sorted(sizes_of)]):
        m = _TASK.match(entry)
        assert m is not None  # parse_tasks checked it
        camera = CameraName[m.group(1)]
        if camera not in sizes_of:
            raise ProfilerError(f"--tasks: no image of camera {camera.name} in the scenes")
        if m.group(2):
            size = (int(m.group(2)), int(m.group(3)))
            if size not in sizes_of[camera]:
                have = ", ".join(f"{w}x{h}" for w, h in sizes_of[camera])
                raise ProfilerError(f"--tasks: no {camera.name} image of {size[0]}x{size[1]} in the scenes "
                                    f"(they hold {have})")
            groups.append((camera, size))
        else:
            groups.extend((camera, size) for size in sizes_of[camera])
    groups = list(dict.fromkeys(groups))
    tasks: list[TaskKey] = []
    skipped: list[str] = []
    for camera, size in groups:
        # one task per camera, named after it; where several sizes of a camera are profiled,
        # each size is a task of its own (resize targets and runtimes depend on the size)
        several = sum(1 for c, _ in groups if c == camera) > 1
        name = f"{camera.name}@{size[0]}x{size[1]}" if several else camera.name
        key = TaskKey(name, camera, size)
        n_labels = sum(1 for f in frames if key.image_of(f.frame) is not None
                       for lab in f.frame.labels.get(camera, ()) if lab.type == cls)
        if n_labels == 0 and config.empty_frames is EmptyFrameRule.EXCLUDE:
            if config.tasks is not None:
                raise ProfilerError(
                    f"task {name}: no frame has a {cls.label} label, so its utility is undefined under "
                    "--empty-frames exclude; leave the camera out of --tasks or use --empty-frames turbo")
            log.warning("task %s skipped: no %s label in any of its frames", name, cls.label)
            skipped.append(name)
            continue
        tasks.append(key)
    if not tasks:
        raise ProfilerError(f"no task has a {cls.label} label in any frame: nothing to profile")
    return tasks, skipped


# --- measurement -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One model run on one frame of one task: one checkpoint line."""

    frame: str
    task: str
    option: str  # option id, or ON_CAR_ID
    payload_bytes: int | None  # None for the on-car model
    runtime_ms: float
    n_labels: int  # labels of the evaluated classes in the frame
    scores: tuple[float, ...]  # evaluated-class detections, descending
    matched: tuple[bool, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.frame, self.task, self.option)

    def to_json(self) -> str:
        d = asdict(self)
        d["scores"], d["matched"] = list(self.scores), list(self.matched)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        return cls(str(d["frame"]), str(d["task"]), str(d["option"]),
                   None if d["payload_bytes"] is None else int(d["payload_bytes"]),
                   float(d["runtime_ms"]), int(d["n_labels"]),
                   tuple(float(s) for s in d["scores"]), tuple(bool(m) for m in d["matched"]))

    def matches(self, cls: WaymoClass) -> FrameMatches:
        return FrameMatches({cls: ClassMatches(np.array(self.scores, dtype=np.float64),
                                               np.array(self.matched, dtype=bool), self.n_labels)})


class Checkpoint:
    """Append-only JSONL: a header with the config fingerprint, then one line per measurement."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], resume: bool) -> None:
        self.path = path
        self.done: dict[tuple[str, str, str], Measurement] = {}
        header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": fingerprint}
        if resume and path.exists():
            self._read(header)
            self._file = path.open("a", encoding="utf-8")
        else:
            if path.exists():
                log.warning("discarding the old checkpoint %s (pass --resume to continue it)", path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8")
            self._file.write(json.dumps(header, sort_keys=True) + "\n")
            self._file.flush()

    def _read(self, header: dict[str, Any]) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            got = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            got = None
        if not isinstance(got, dict) or got.get("format") != CHECKPOINT_FORMAT:
            raise ProfilerError(f"{self.path} line 1: not a carlink profile checkpoint")
        if got.get("version") != CHECKPOINT_VERSION:
            raise ProfilerError(f"{self.path}: checkpoint version {got.get('version')} is not {CHECKPOINT_VERSION}")
        if got.get("config") != header["config"]:
            diff = sorted(k for k in header["config"] if got.get("config", {}).get(k) != header["config"][k])
            raise ProfilerError(f"{self.path}: made with different settings ({', '.join(diff)}); "
                                "rerun without --resume to start over")
        for n, line in enumerate(lines[1:], start=2):
            try:
                m = Measurement.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                if n == len(lines):  # the last line was cut off by the interruption: measure again
                    log.info("%s line %d is incomplete; it will be measured again", self.path, n)
                    break
                raise ProfilerError(f"{self.path} line {n}: not a measurement record") from None
            self.done[m.key] = m

    def add(self, m: Measurement) -> None:
        self._file.write(m.to_json() + "\n")
        self._file.flush()  # what was measured survives an interruption
        self.done[m.key] = m

    def close(self) -> None:
        self._file.close()


def _labels(frame: Frame, camera: CameraName) -> list[Label]:
    return [Label(lab.box, lab.type) for lab in frame.labels.get(camera, ())]


def _evaluate(labels: list[Label], dets: list[Detection], cls: WaymoClass) -> tuple[int, tuple[float, ...], tuple[bool, ...]]:
    cm = match_frame(labels, dets, (cls,)).classes[cls]
    return cm.n_labels, tuple(float(s) for s in cm.scores), tuple(bool(x) for x in cm.matched)


def _timed_detect(model: Detector, image: np.ndarray) -> tuple[list[Detection], float]:
    t0 = cv2.getTickCount()
    dets = model.detect(image)
    return dets, (cv2.getTickCount() - t0) * 1000.0 / cv2.getTickFrequency()


def _evaluated_class(models: Iterable[str]) -> WaymoClass:
    """The one class all models detect (the profile's utility is that class's AP)."""
    sets = [set(get_spec(m).classes) for m in models]
    common = set.intersection(*sets)
    if WaymoClass.PEDESTRIAN in common:
        return WaymoClass.PEDESTRIAN
    if not common:
        raise ProfilerError(f"models {', '.join(models)} detect no class in common; profile them separately")
    return min(common)


@dataclass
class RunResult:
    measured: int = 0  # measured in this run
    reused: int = 0  # read back from the checkpoint


def measure(
    config: ProfileConfig,
    frames: Sequence[FrameRef],
    tasks: Sequence[TaskKey],
    checkpoint: Checkpoint,
    *,
    stop_after: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> RunResult:
    """Measure every (frame, task, option) not yet in the checkpoint."""
    all_models = [config.onboard, *config.models]
    cls = _evaluated_class(all_models)
    models: dict[str, Detector] = {}
    result = RunResult()
    options = config.options()

    def model(name: str) -> Detector:
        if name not in models:
            models[name] = get_model(name)
        return models[name]

    def record(m: Measurement) -> None:
        checkpoint.add(m)
        result.measured += 1
        if stop_after is not None and result.measured >= stop_after:
            raise ProfilingStopped(f"stopped after {result.measured} measurements, as asked")

    for ref in frames:
        for tk in tasks:
            cam_image = tk.image_of(ref.frame)
            if cam_image is None:
                continue
            task = tk.name
            todo = [o for o in options if (ref.id, task, o.id) not in checkpoint.done]
            need_on_car = (ref.id, task, ON_CAR_ID) not in checkpoint.done
            result.reused += len(options) - len(todo) + (not need_on_car)
            if todo or need_on_car:
                image = cam_image.decode()
                h, w = image.shape[:2]
                labels = _labels(ref.frame, tk.camera)
                if need_on_car:
                    dets, ms = _timed_detect(model(config.onboard), image)
                    record(Measurement(ref.id, task, ON_CAR_ID, None, ms, *_evaluate(labels, dets, cls)))
                decoded: dict[tuple[str, str], tuple[np.ndarray, int, float]] = {}
                for o in todo:
                    k = (o.resize.label, o.codec.label)
                    if k not in decoded:
                        decoded[k] = _encode_decode(image, o)
                    payload_img, n_bytes, decode_ms = decoded[k]
                    dets, ms = _timed_detect(model(o.model), payload_img)
                    ph, pw = payload_img.shape[:2]
                    sx, sy = w / pw, h / ph
                    dets = [Detection(d.box.scaled(sx, sy), d.score, d.cls) for d in dets]
                    record(Measurement(ref.id, task, o.id, n_bytes, decode_ms + ms, *_evaluate(labels, dets, cls)))
            if progress is not None:
                progress(1)
    return result


def car_option(o: OptionSpec, width: int, height: int) -> Option:
    """The allocator option the car would act on for an image of this size."""
    return Option(id=o.id, utility=0.0, payload_bytes=1.0, model=o.model,
                  resize=o.resize.target(width, height), codec=o.codec.codec, jpeg_quality=o.codec.jpeg_quality)


def _encode_decode(image: np.ndarray, o: OptionSpec) -> tuple[np.ndarray, int, float]:
    """The car's encoder, then the cloud's decoder: (decoded image, payload bytes, decode ms)."""
    h, w = image.shape[:2]
    enc = encode_image(image, encode_spec(car_option(o, w, h)))
    t0 = cv2.getTickCount()
    out = decode(enc.payload, _PB_ENCODING[enc.codec], enc.size, _DECODE_LIMITS)
    ms = (cv2.getTickCount() - t0) * 1000.0 / cv2.getTickFrequency()
    return out, len(enc.payload), ms


# --- assembling the profile ----------------------------------------------------------------------


def _r(x: float, nd: int = 6) -> float:
    return float(round(x, nd))


def _ap(ms: Sequence[Measurement], cls: WaymoClass, rule: EmptyFrameRule) -> float | None:
    mean = set_ap([m.matches(cls) for m in ms], rule).mean
    return None if mean is None else _r(mean)


def windows(frames: Sequence[FrameRef], size: int) -> list[tuple[int, int]]:
    """Consecutive runs of ``size`` frames (half-open index ranges) that never cross a context."""
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i].context != frames[start].context or i - start == size:
            out.append((start, i))
            start = i
    return out


def _runtime(ms: Sequence[Measurement], table: RuntimeTable | None, model: str, resize: str) -> tuple[float, float]:
    if table is not None:
        return table.lookup(model, resize)
    values = np.array([m.runtime_ms for m in ms])
    return _r(float(np.percentile(values, 50)), 2), _r(float(np.percentile(values, 99)), 2)


def scene_provenance(config: ProfileConfig, frames: Sequence[FrameRef]) -> list[dict[str, Any]]:
    out = []
    for i, path in enumerate(config.scenes):
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        out.append({"path": path, "sha256": digest, "format": detect_scene_format(path),
                    "frames": sum(1 for f in frames if f.scene == i)})
    return out


def assemble(
    config: ProfileConfig,
    frames: Sequence[FrameRef],
    task_keys: Sequence[TaskKey],
    skipped: Sequence[str],
    done: dict[tuple[str, str, str], Measurement],
    *,
    command: str,
    table: RuntimeTable | None,
) -> dict[str, Any]:
    """The profile document (JSON-able, version 2) from the measurements, in a fixed order."""
    cls = _evaluated_class([config.onboard, *config.models])
    rule = config.empty_frames
    tasks: list[dict[str, Any]] = []
    for tk in task_keys:
        task = tk.name
        tframes = [f for f in frames if tk.image_of(f.frame) is not None]
        wins = windows(tframes, config.window_frames)

        def series(option: str) -> list[Measurement]:
            return [done[(f.id, task, option)] for f in tframes]

        on_car = series(ON_CAR_ID)

        def utilities(ms: list[Measurement]) -> dict[str, Any]:
            return {
                "utility": _ap(ms, cls, rule),
                "utilities": [_ap([m], cls, rule) for m in ms],
                "window_utilities": [_ap(ms[a:b], cls, rule) for a, b in wins],
            }

        p50, p99 = _runtime(on_car, table, config.onboard, "native")
        oc = {"id": ON_CAR_ID, "model": config.onboard, **utilities(on_car),
              "runtime_ms_p50": p50, "runtime_ms_p99": p99}
        options = []
        for o in config.options():
            ms = series(o.id)
            payload = np.array([m.payload_bytes for m in ms], dtype=float)
            p50, p99 = _runtime(ms, table, o.model, o.resize.label)
            target = o.resize.target(*tk.size)
            opt: dict[str, Any] = {"id": o.id, "model": o.model, "resize": list(target) if target else None,
                                   "resize_rule": o.resize.label, "codec": o.codec.codec}
            if o.codec.jpeg_quality is not None:
                opt["jpeg_quality"] = o.codec.jpeg_quality
            opt.update({
                "payload_bytes_mean": _r(float(payload.mean()), 1),
                "payload_bytes_p95": _r(float(np.percentile(payload, 95)), 1),
                "payloads": [int(p) for p in payload],
                "runtime_ms_p50": p50, "runtime_ms_p99": p99,
                **utilities(ms),
            })
            options.append(opt)
        tasks.append({
            "name": task, "camera": tk.camera.name, "family": get_spec(config.models[0]).family,
            "classes": [cls.label], "deadline_ms": config.deadline_ms, "weight": config.weight,
            "image_size": list(tk.size),
            "frames": [{"id": f.id, "labels": m.n_labels} for f, m in zip(tframes, on_car)],
            "windows": [list(w) for w in wins],
            "on_car": oc, "options": options,
        })
    runtime_source = (
        {"kind": "table", "path": table.source, "sha256": table.sha256} if table is not None else
        {"kind": "measured", "where": "this machine, CPU", "machine": platform.machine(),
         "processor": platform.processor() or "unknown", "opencv_threads": cv2.getNumThreads(),
         "cloud_runtime": "payload decode + detect", "on_car_runtime": "detect"}
    )
    description = config.description or (
        f"Measured by `carlink profile run` on {len(frames)} real frames; utility = {cls.label} AP@0.5.")
    return {
        "schema": "carlink.profile",
        "version": 2,
        "description": description,
        "metric": f"AP50 ({cls.label})",
        "provenance": {
            "command": command,
            "on_car_model": config.onboard,
            "cloud_models": list(config.models),
            "detectors": {m: get_spec(m).description for m in dict.fromkeys([config.onboard, *config.models])},
            "data": scene_provenance(config, frames),
            "empty_frame_rule": rule.value,
            "aggregate": "AP with detections pooled over the frames (COCO style), not a mean of frame APs",
            "window_frames": config.window_frames,
            "runtime": runtime_source,
            "software": {"carlink": carlink_version, "opencv": cv2.__version__},
            "skipped_tasks": list(skipped),
        },
        "tasks": tasks,
    }


def command_line(config: ProfileConfig, output: str, table: str | None) -> str:
    """The canonical command that rebuilds a profile (resume flags left out: same result)."""
    parts = ["carlink", "profile", "run", *config.scenes,
             "--tasks", "all" if config.tasks is None else ",".join(config.tasks),
             "--models", ",".join(config.models), "--onboard", config.onboard,
             "--options", ",".join([r.label for r in config.resizes] + [c.label for c in config.codecs]),
             "--deadline-ms", f"{config.deadline_ms:g}", "--weight", f"{config.weight:g}",
             "--window", str(config.window_frames), "--empty-frames", config.empty_frames.value]
    if config.max_frames is not None:
        parts += ["--max-frames", str(config.max_frames)]
    if table is not None:
        parts += ["--runtime-table", table]
    if config.description:
        parts += ["--description", config.description]
    parts += ["-o", output]
    return " ".join(_quote(p) for p in parts)


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial.jsonl")


def run_profile(
    config: ProfileConfig,
    output: str | Path,
    *,
    resume: bool = False,
    table: RuntimeTable | None = None,
    stop_after: int | None = None,
    progress_bar: bool = True,
    keep_checkpoint: bool = False,
) -> tuple[dict[str, Any], RunResult]:
    """Measure (or resume measuring) and write the profile to ``output``; return it.

    The checkpoint ``<output>.partial.jsonl`` is deleted once the profile is written, unless
    ``keep_checkpoint`` (then a later ``resume`` re-assembles the file without measuring).
    """
    from tqdm import tqdm

    from carlink.profile import parse_profile

    output = Path(output)
    for m in [config.onboard, *config.models]:
        get_spec(m)  # unknown names fail before anything is read
    frames = load_frames(config)
    if not frames:
        raise ProfilerError("the scenes hold no frame")
    cls = _evaluated_class([config.onboard, *config.models])
    task_keys, skipped = select_tasks(config, frames, cls)
    items = sum(1 for f in frames for t in task_keys if t.image_of(f.frame) is not None)
    ckpt = Checkpoint(checkpoint_path(output), config.fingerprint(), resume)
    try:
        with tqdm(total=items, unit="image", desc="profiling", disable=not progress_bar, leave=False) as bar:
            result = measure(config, frames, task_keys, ckpt, stop_after=stop_after, progress=bar.update)
    finally:
        ckpt.close()
    doc = assemble(config, frames, task_keys, skipped, ckpt.done,
                   command=command_line(config, str(output), table.source if table else None), table=table)
    parse_profile(doc, str(output))  # never write a file the loader would refuse
    text = profile_text(doc)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    if not keep_checkpoint:
        ckpt.path.unlink(missing_ok=True)
    return doc, result


_SCALAR_LIST = re.compile(r"\[\s*([^\[\]{}]*?)\s*\]", re.S)


def profile_text(doc: dict[str, Any]) -> str:
    """Indented JSON with lists of numbers on one line each (a profile has long per-frame lists)."""
    text = json.dumps(doc, indent=1, allow_nan=False)
    return _SCALAR_LIST.sub(lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text) + "\n"


def iter_measurements(path: Path) -> Iterator[Measurement]:
    """The measurements of a checkpoint file (for inspection)."""
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        yield Measurement.from_dict(json.loads(line))
