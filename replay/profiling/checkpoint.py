"""The checkpoint: every measurement appended to a JSONL file as soon as it is made.

Line 1 is a header with the run's fingerprint (:meth:`ProfileConfig.fingerprint`); each further
line is one :class:`Measurement`. A resumed run refuses a checkpoint made with other settings,
reads the rest back and measures only what is missing; a last line cut off by the interruption is
measured again. Profiles are assembled from these records alone, so an interrupted-and-resumed
run gives the same profile as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from carlink.detection import WaymoClass
from carlink.replay.evaluation import ClassMatches, FrameMatches
from carlink.replay.profiling.errors import ProfilerError

log = logging.getLogger("carlink.replay.profiler")

CHECKPOINT_FORMAT = "carlink.profile-checkpoint"
CHECKPOINT_VERSION = 2  # 2: matches per class (1 held one class)
ON_CAR_ID = "on-car"


@dataclass(frozen=True)
class ClassRecord:
    """One class in one frame: label count, detection scores (descending), which matched."""

    n_labels: int
    scores: tuple[float, ...]
    matched: tuple[bool, ...]

    @classmethod
    def of(cls, cm: ClassMatches) -> "ClassRecord":
        # scores rounded once, here: a fresh and a read-back record are then the same numbers
        return cls(cm.n_labels, tuple(round(float(s), 6) for s in cm.scores), tuple(bool(x) for x in cm.matched))


@dataclass(frozen=True)
class Measurement:
    """One model run on one frame of one task: one checkpoint line."""

    frame: str
    task: str
    option: str  # option id, or ON_CAR_ID
    payload_bytes: int | None  # None for the on-car model
    runtime_ms: float
    classes: dict[str, ClassRecord]  # class label -> its matches, every evaluated class

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.frame, self.task, self.option)

    def n_labels(self, classes: Sequence[WaymoClass]) -> int:
        """Labels of these classes in the frame."""
        return sum(c.n_labels for k, c in self.classes.items() if WaymoClass[k.upper()] in classes)

    def to_json(self) -> str:
        d = {"frame": self.frame, "task": self.task, "option": self.option, "payload_bytes": self.payload_bytes,
             "runtime_ms": self.runtime_ms,
             "classes": {k: {"n_labels": c.n_labels, "scores": list(c.scores), "matched": list(c.matched)}
                         for k, c in self.classes.items()}}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        classes = {str(k): ClassRecord(int(v["n_labels"]), tuple(float(s) for s in v["scores"]),
                                       tuple(bool(m) for m in v["matched"]))
                   for k, v in d["classes"].items()}
        for k, c in classes.items():
            if k.upper() not in WaymoClass.__members__ or len(c.scores) != len(c.matched):
                raise ValueError(f"bad class record {k}")
        return cls(str(d["frame"]), str(d["task"]), str(d["option"]),
                   None if d["payload_bytes"] is None else int(d["payload_bytes"]),
                   float(d["runtime_ms"]), classes)

    def matches(self, classes: Sequence[WaymoClass]) -> FrameMatches:
        """The record's matches of these classes, as the metric pools them
        (:func:`carlink.replay.evaluation.set_ap`)."""
        return FrameMatches({cls: ClassMatches(np.array(c.scores, dtype=np.float64), np.array(c.matched, dtype=bool),
                                               c.n_labels)
                             for cls in classes if (c := self.classes.get(cls.label)) is not None})


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
            raise ProfilerError(f"{self.path}: checkpoint version {got.get('version')} is not {CHECKPOINT_VERSION}; "
                                "rerun without --resume to start over")
        if got.get("config") != header["config"]:
            theirs = got.get("config") if isinstance(got.get("config"), dict) else {}
            diff = sorted(k for k in header["config"] if theirs.get(k) != header["config"][k])
            raise ProfilerError(f"{self.path}: made with different settings ({', '.join(diff)}); "
                                "rerun without --resume to start over")
        for n, line in enumerate(lines[1:], start=2):
            try:
                m = Measurement.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                if n == len(lines):  # the last line was cut off by the interruption: measure again
                    log.info("%s line %d is incomplete; it will be measured again", self.path, n)
                    self._drop_cut_line(lines[:-1])
                    break
                raise ProfilerError(f"{self.path} line {n}: not a measurement record") from None
            self.done[m.key] = m

    def _drop_cut_line(self, kept: list[str]) -> None:
        # the next append must start on a line of its own
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def add(self, m: Measurement) -> None:
        self._file.write(m.to_json() + "\n")
        self._file.flush()  # what was measured survives an interruption
        self.done[m.key] = m

    def close(self) -> None:
        self._file.close()


def iter_measurements(path: Path) -> Iterator[Measurement]:
    """The measurements of a checkpoint file (for inspection)."""
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        yield Measurement.from_dict(json.loads(line))
