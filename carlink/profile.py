"""The profile: per task, the measured options the allocator chooses from (versioned JSON).

Schema, version 2 (every key is checked; unknown keys are errors so that typos do not pass).
Version 1 files (the same without the keys marked *v2*) are still read. ``carlink profile run``
(replay/profiling/) writes version 2, through this model (:meth:`Profile.save`)::

    {
      "schema": "carlink.profile",
      "version": 2,
      "description": "free text: where the numbers come from",
      "metric": "AP50 (pedestrian)",         # what utility measures
      "provenance": {...},                   # v2, optional: how the numbers were made (below)
      "tasks": [
        {
          "name": "FRONT", "camera": "FRONT",
          "deadline_ms": 150, "weight": 1.0,
          "utility_range": [0.0, 1.0],       # optional, default [0, 1]
          "family": "hog",                   # v2, optional: the model family of the task
          "classes": ["pedestrian"],         # v2, optional: classes the utility is measured on
          "image_size": [1920, 1280],        # v2, optional: camera size that "resize" refers to
          "frames": [{"id": "ctx@1553735853462203", "labels": 4}],   # v2, optional
          "windows": [[0, 5], [5, 10]],      # v2, optional: half-open index ranges into frames
          "on_car": {"id": "on-car", "model": "hog-default", "utility": 0.31,
                     "runtime_ms_p50": 40, "runtime_ms_p99": 55,
                     "utilities": [0.4, null], "window_utilities": [0.3, 0.35]},
          "options": [
            {"id": "frcnn-960-q75", "model": "frcnn", "resize": [960, 640],
             "resize_rule": "x0.5",          # v2, optional: how resize was chosen per frame
             "codec": "jpeg", "jpeg_quality": 75,
             "payload_bytes_mean": 61000, "payload_bytes_p95": 70000,
             "payloads": [60211, 61789],     # v2, optional: bytes per frame
             "runtime_ms_p50": 28, "runtime_ms_p99": 41,
             "utility": 0.58, "utilities": [0.61, null],
             "window_utilities": [0.6, 0.55]}                  # v2, optional
          ]
        }
      ]
    }

``resize`` is the (width, height) the frame is resized to before encoding (null: as captured);
``jpeg_quality`` is required for ``"jpeg"`` and not allowed otherwise. Units: bytes, ms.

Per-frame and windowed numbers (v2). ``utility`` is the aggregate over all of the task's frames
(what a car knows in advance); ``utilities[i]`` is the value on ``frames[i]`` alone (an oracle
for replay); ``window_utilities[w]`` the aggregate over the frames ``windows[w]`` covers (TURBO's
dynamic policies). A per-frame or window value is ``null`` where it is undefined: the frames hold
no label of the measured classes (carlink's default empty-frame rule, see
replay/evaluation.py). Lists must be as long as ``frames`` / ``windows``; a task with
per-frame lists must list its ``frames``.

``provenance`` (v2): ``command`` (the exact command that rebuilds the file), ``on_car_model``,
``cloud_models``, ``detectors`` (name -> description), ``data`` (per scene file: path, sha256,
format, frames), ``empty_frame_rule``, ``aggregate``, ``window_frames``, ``runtime`` (measured
where, or the runtime table used), ``software`` (versions), ``skipped_tasks``.

:func:`load_profile` reads and validates a file; errors name the file, the key path and the task
or option (``tasks[2] 'SIDE_LEFT' > options[4] 'frcnn-960-q75' > payload_bytes_p95: ...``).
:meth:`Profile.tasks_for_planning` turns it into :class:`carlink.tasks.Task` objects, the one
conversion every reader uses (the daemon, ``carlink allocate``, the replay): each option carries
the profile's statistics, and plans with the mean payload, the p50 runtime and the expected
per-frame utility until :meth:`carlink.tasks.Task.planned` picks others.
:meth:`Profile.to_tasks` is that list under one choice of statistics (by default the
conservative p95 payload and p99 runtime, with the aggregate utility).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from carlink.detection import WaymoClass
from carlink.tasks import Option, PayloadStat, RuntimeStat, Task, UtilityStat
from carlink.validation import StrictModel, problems

SCHEMA = "carlink.profile"
VERSION = 2  # what carlink writes
SUPPORTED_VERSIONS = (1, 2)  # what it reads
EXAMPLE_PROFILE = Path(__file__).resolve().parent / "profiles" / "example.json"
# Measured with `carlink profile run` on the real frames of shared/data (see its provenance).
DEFAULT_PROFILE = Path(__file__).resolve().parent / "profiles" / "default.json"
# The same measurement on the held-out sequences: replay's per-frame ground truth, never a plan.
EVALUATION_PROFILE = Path(__file__).resolve().parent / "profiles" / "evaluation.json"

NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
MaybeUtility = Annotated[float, Field(allow_inf_nan=False)] | None
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ProfileError(ValueError):
    """A profile file that cannot be read or does not follow the schema."""


class OnCarProfile(StrictModel):
    """The task's on-car model: always run, zero bandwidth."""

    id: str = Field(default="on-car", min_length=1)
    model: str = Field(min_length=1)
    utility: float = Field(allow_inf_nan=False)
    runtime_ms_p50: NonNeg = 0.0
    runtime_ms_p99: NonNeg = 0.0
    utilities: list[MaybeUtility] | None = None
    window_utilities: list[MaybeUtility] | None = None


class OptionProfile(StrictModel):
    """One cloud option: model x resize x codec, with its measured costs and utility."""

    id: str = Field(min_length=1)
    model: str = Field(min_length=1)
    resize: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None = None
    codec: Literal["jpeg", "png", "raw"]
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] | None = None
    payload_bytes_mean: NonNeg
    payload_bytes_p95: NonNeg
    runtime_ms_p50: NonNeg
    runtime_ms_p99: NonNeg
    utility: float = Field(allow_inf_nan=False)
    utilities: list[MaybeUtility] | None = None
    window_utilities: list[MaybeUtility] | None = None
    resize_rule: str | None = None
    payloads: list[Annotated[int, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "OptionProfile":
        if self.codec == "jpeg" and self.jpeg_quality is None:
            raise ValueError("codec 'jpeg' needs jpeg_quality (1-100)")
        if self.codec != "jpeg" and self.jpeg_quality is not None:
            raise ValueError(f"jpeg_quality is only allowed with codec 'jpeg', not {self.codec!r}")
        if self.payload_bytes_p95 < self.payload_bytes_mean * 0.5:
            raise ValueError("payload_bytes_p95 is implausibly below payload_bytes_mean")
        if self.runtime_ms_p99 < self.runtime_ms_p50:
            raise ValueError("runtime_ms_p99 must be >= runtime_ms_p50")
        return self


class FrameInfo(StrictModel):
    """One profiled frame of a task: a stable id and its label count (of the measured classes)."""

    id: str = Field(min_length=1)
    labels: Annotated[int, Field(ge=0)] = 0


class Provenance(StrictModel):
    """How a profile was made. ``command`` is required; the other keys are documented above."""

    command: str = Field(min_length=1)
    on_car_model: str | None = None
    cloud_models: list[str] | None = None
    detectors: dict[str, str] | None = None
    data: list[dict[str, Any]] | None = None
    empty_frame_rule: str | None = None
    aggregate: str | None = None
    window_frames: int | None = None
    runtime: dict[str, Any] | None = None
    software: dict[str, str] | None = None
    skipped_tasks: list[str] | None = None


class TaskProfile(StrictModel):
    name: str = Field(min_length=1)
    camera: str = Field(min_length=1)
    deadline_ms: Positive
    weight: NonNeg = 1.0
    utility_range: tuple[float, float] = (0.0, 1.0)
    on_car: OnCarProfile
    options: list[OptionProfile] = Field(default_factory=list)
    family: str | None = None
    classes: list[str] | None = None
    image_size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None = None
    frames: list[FrameInfo] | None = None
    windows: list[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]] | None = None

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, classes: list[str] | None) -> list[str] | None:
        known = [c.label for c in WaymoClass]
        for c in classes or ():
            if c.upper() not in WaymoClass.__members__:
                raise ValueError(f"unknown class {c!r} (expected one of {', '.join(known)})")
        return classes

    @model_validator(mode="after")
    def _per_frame_lengths(self) -> "TaskProfile":
        n_frames = None if self.frames is None else len(self.frames)
        if self.frames is not None:
            ids = [f.id for f in self.frames]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"frames: id {dup[0]!r} is listed twice")
        if self.windows is not None:
            if n_frames is None:
                raise ValueError("windows needs frames")
            for w, (a, b) in enumerate(self.windows):
                if not a < b <= n_frames:
                    raise ValueError(f"windows[{w}] = [{a}, {b}] is not a range inside the {n_frames} frames")
        lo, hi = self.utility_range
        for who, item in [(self.on_car.id, self.on_car), *((o.id, o) for o in self.options)]:
            for key, want, what in (("utilities", n_frames, "frames"), ("payloads", n_frames, "frames"),
                                    ("window_utilities", None if self.windows is None else len(self.windows),
                                     "windows")):
                values = getattr(item, key, None)
                if values is None:
                    continue
                if want is None:
                    raise ValueError(f"option {who!r}: {key} needs the task's {what}")
                if len(values) != want:
                    raise ValueError(f"option {who!r}: {key} has {len(values)} values for {want} {what}")
                if key != "payloads":
                    bad = [i for i, v in enumerate(values) if v is not None and not lo <= v <= hi]
                    if bad:
                        raise ValueError(f"option {who!r}: {key}[{bad[0]}] = {values[bad[0]]} is outside "
                                         f"the utility range [{lo}, {hi}]")
        return self

    @property
    def waymo_classes(self) -> tuple[WaymoClass, ...]:
        """The measured classes, in file order (empty: not stated, i.e. whatever the models detect)."""
        return tuple(WaymoClass[c.upper()] for c in self.classes or ())

    @property
    def frame_positions(self) -> dict[str, int]:
        """Profiled frame id -> its index into the per-frame lists (empty without ``frames``)."""
        return {f.id: k for k, f in enumerate(self.frames or ())}

    def frame_utilities(self, index: int) -> dict[str, float | None]:
        """Option id -> utility on frame ``index`` alone (on-car included): replay's oracle."""
        return {o.id: (o.utilities[index] if o.utilities is not None else None)
                for o in (self.on_car, *self.options)}

    def window_index(self, frame_index: int) -> int | None:
        """The window holding frame ``frame_index`` (None without windows)."""
        for w, (a, b) in enumerate(self.windows or ()):
            if a <= frame_index < b:
                return w
        return None

    def to_task(self) -> Task:
        """This task as carlink plans it (see :meth:`Profile.tasks_for_planning`); ValueError
        (naming task and option) where the numbers break the Task rules."""
        oc = self.on_car
        options = [Option(id=oc.id, on_car=True, model=oc.model, utility=expected_frame_utility(oc.utility, oc.utilities),
                          runtime_ms=oc.runtime_ms_p50, runtime_ms_p99=oc.runtime_ms_p99, aggregate_utility=oc.utility)]
        for o in self.options:
            options.append(Option(
                id=o.id, model=o.model, resize=o.resize, codec=o.codec, jpeg_quality=o.jpeg_quality,
                utility=expected_frame_utility(o.utility, o.utilities), aggregate_utility=o.utility,
                payload_bytes=o.payload_bytes_mean, payload_bytes_p95=o.payload_bytes_p95,
                runtime_ms=o.runtime_ms_p50, runtime_ms_p99=o.runtime_ms_p99,
            ))
        return Task(name=self.name, deadline_ms=self.deadline_ms, options=tuple(options), weight=self.weight,
                    camera=self.camera, utility_range=self.utility_range)


def expected_frame_utility(aggregate: float, per_frame: Iterable[float | None] | None) -> float:
    """An option's expected utility on one frame: the mean of its per-frame utilities where the
    profile has them (undefined frames left out), else the aggregate. The aggregate pools
    detections over frames (COCO style) and weighs busy frames more; a frame's result is what
    the car uses, so the per-frame mean is what the policy maximises."""
    vals = [u for u in (per_frame or ()) if u is not None]
    return math.fsum(vals) / len(vals) if vals else float(aggregate)


class Profile(StrictModel):
    schema_: Literal["carlink.profile"] = Field(default=SCHEMA, alias="schema")
    version: Literal[1, 2]
    description: str = ""
    metric: str = "AP50"
    provenance: Provenance | None = None
    tasks: list[TaskProfile]

    model_config = ConfigDict(populate_by_name=True)  # merged with StrictModel's

    def tasks_for_planning(self) -> list[Task]:
        """The profile's tasks, in file order, as carlink plans them: on-car option first, every
        option with the profile's statistics (payload mean and p95, runtime p50 and p99, expected
        per-frame and aggregate utility) and planning with the mean payload, the p50 runtime and
        the expected per-frame utility (what the car's policy expects of one frame;
        :meth:`carlink.tasks.Task.planned` picks other statistics).

        ValueError (naming task and option) where the numbers break the Task rules, e.g. a
        utility outside the task's utility_range, duplicate option ids or task names.
        """
        out = [t.to_task() for t in self.tasks]
        names = [t.name for t in out]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate task names {dup}")
        return out

    def to_tasks(
        self,
        payload: PayloadStat = "p95",
        runtime: RuntimeStat = "p99",
        deadline_ms: float | None = None,
        utility: UtilityStat = "aggregate",
    ) -> list[Task]:
        """:meth:`tasks_for_planning` under one choice of statistics (by default the conservative
        p95 payload and p99 runtime with the aggregate utility, as a bare solve plans), every
        deadline replaced by ``deadline_ms`` when given."""
        return [t.planned(payload, runtime, utility).overridden(deadline_ms=deadline_ms)
                for t in self.tasks_for_planning()]

    def to_json(self) -> str:
        """The file's text: the model's own JSON, indented, with lists of numbers on one line
        each (a measured profile holds long per-frame lists); the same profile, the same text."""
        return _json_text(self.model_dump(mode="json", by_alias=True, exclude_none=True)) + "\n"

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)


def _json_text(value: Any, indent: int = 0) -> str:
    """Indented JSON where a list of scalars stays on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_json_text(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{_json_text(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False)


def parse_profile(raw: Any, source: str = "<profile>") -> Profile:
    """Validate an already parsed JSON document."""
    if isinstance(raw, dict) and raw.get("version") not in (None, *SUPPORTED_VERSIONS) and isinstance(raw.get("version"), int):
        raise ProfileError(f"{source}: profile version {raw['version']} is not supported "
                           f"(this carlink reads versions {', '.join(map(str, SUPPORTED_VERSIONS))})")
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{source}: invalid profile:\n  " + "\n  ".join(problems(exc, raw))) from None
    try:
        profile.tasks_for_planning()  # the Task rules (utility range, unique ids) checked at load time
    except ValueError as exc:
        raise ProfileError(f"{source}: {exc}") from None
    return profile


def load_profile(path: str | Path | None = None) -> Profile:
    """Read and validate a profile file (the shipped example when ``path`` is None)."""
    path = Path(path) if path is not None else EXAMPLE_PROFILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    return parse_profile(raw, str(path))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a profile (numbers must be finite)")


