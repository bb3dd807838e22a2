"""What a profile run measures: scenes, models, option grid, tasks, and how it is summarised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carlink.detection import WaymoClass
from carlink.replay.evaluation import EmptyFrameRule
from carlink.replay.profiling.errors import ProfilerError
from carlink.replay.profiling.options import OptionSpec, Transport, format_options
from carlink.zoo.registry import get_spec

# The Waymo camera-label classes a utility can be measured on (signs have no 2D camera labels
# in the 1 Hz sequences, and no detector of the zoo maps a COCO class to them).
PROFILED_CLASSES: tuple[WaymoClass, ...] = (WaymoClass.VEHICLE, WaymoClass.PEDESTRIAN, WaymoClass.CYCLIST)


@dataclass(frozen=True)
class ProfileConfig:
    """Everything that decides a profile's numbers (and so must match when resuming)."""

    scenes: tuple[str, ...]
    models: tuple[str, ...]
    onboard: str
    transports: tuple[Transport, ...]
    tasks: tuple[str, ...] | None = None  # camera names; None: every camera with an image
    deadline_ms: float = 150.0
    weight: float = 1.0
    window_frames: int = 5
    empty_frames: EmptyFrameRule = EmptyFrameRule.EXCLUDE
    max_frames: int | None = None  # per scene file, the first N frames (for quick runs)
    description: str = ""
    as_cameras: tuple[str, ...] | None = None  # write the one measured task under these cameras
    backend: str = "auto"  # the zoo backend the models run on (darknet: opencv or torch)
    # the classes utility averages over; None: every measured class. Not part of the fingerprint:
    # the checkpoint holds the matches of every measured class, so it can be re-assembled.
    utility_classes: tuple[WaymoClass, ...] | None = None

    def options(self) -> list[OptionSpec]:
        """Every cloud model with every transport; ``input`` needs a model with an input size."""
        out = []
        for m in self.models:
            size = get_spec(m).input_size
            for t in self.transports:
                if t.resize.model_input and size is None:
                    raise ProfilerError(f"--options {t.label}: model {m} has no fixed input size "
                                        "(it takes any), so 'input' means nothing for it")
                out.append(OptionSpec(m, t, size))
        return out

    def classes(self) -> tuple[WaymoClass, ...]:
        """The classes measured (matched and checkpointed): those any of the models detects (a
        cloud model that misses a class the on-car model finds is worth less for it)."""
        detected = {c for m in (self.onboard, *self.models) for c in get_spec(m).classes}
        classes = tuple(c for c in PROFILED_CLASSES if c in detected)
        if not classes:
            raise ProfilerError(f"models {', '.join((self.onboard, *self.models))} detect none of "
                                f"{', '.join(c.label for c in PROFILED_CLASSES)}: no utility to measure")
        return classes

    def evaluated(self) -> tuple[WaymoClass, ...]:
        """The classes utility is the mean AP of: ``utility_classes`` (a subset of the measured
        ones, in measured order), else every measured class."""
        measured = self.classes()
        if self.utility_classes is None:
            return measured
        missing = [c.label for c in self.utility_classes if c not in measured]
        if missing:
            raise ProfilerError(f"--classes {', '.join(missing)}: no model of the profile detects it "
                                f"(they detect {', '.join(c.label for c in measured)})")
        return tuple(c for c in measured if c in self.utility_classes)

    def fingerprint(self) -> dict[str, Any]:
        """The JSON-able identity of the measurements (not of how they are summarised)."""
        return {
            "scenes": list(self.scenes),
            "models": list(self.models),
            "onboard": self.onboard,
            "backend": self.backend,
            "options": [t.label for t in self.transports],
            "classes": [c.label for c in self.classes()],
            "tasks": None if self.tasks is None else list(self.tasks),
            "max_frames": self.max_frames,
        }

    def options_text(self) -> str:
        return format_options(self.transports)


def parse_classes(text: str) -> tuple[WaymoClass, ...]:
    """``--classes``: comma-separated class names (vehicle, pedestrian, cyclist), each once."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    known = [c.label for c in PROFILED_CLASSES]
    for n in names:
        if n not in known:
            raise ProfilerError(f"--classes: unknown class {n!r}; known: {', '.join(known)}")
    if not names:
        raise ProfilerError("--classes names no class")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ProfilerError(f"--classes names {dup[0]} twice")
    return tuple(WaymoClass[n.upper()] for n in names)


def metric_name(classes: tuple[WaymoClass, ...]) -> str:
    """``AP50 (pedestrian)``, or for several classes ``AP50 (mean over vehicle, pedestrian,
    cyclist present)``: per frame, the mean over the classes that frame has labels of."""
    names = ", ".join(c.label for c in classes)
    return f"AP50 ({names})" if len(classes) == 1 else f"AP50 (mean over {names} present)"
