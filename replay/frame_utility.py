"""What an option is worth on one frame, and how many bytes it sends: from the profile or measured.

Two sources with one interface:

* :class:`ProfileUtilities` (profile-driven mode, fast): the profile's per-frame utility and
  payload where the profile measured this image (matched by its source frame id and the option,
  replay/per_frame.py), else the option's aggregate utility and mean payload (undefined where the
  camera has no label of the task's classes). No model runs.
* :class:`TruthUtilities` (``--truth``): the per-frame utility and payload of a measurement
  profile other than the one the car plans with (e.g. carlink/profiles/evaluation.json, measured on
  the evaluation sequences); every task-frame and option must be in it (checked up front by
  :func:`check_truth`). No model runs.
* :class:`MeasuredUtilities` (models run for real): the frame's camera image is encoded with
  the car's encoder (real payload bytes), decoded with the cloud's decoder, and the option's model
  runs on it; the utility is that frame's AP@0.5 against the camera labels (replay/evaluation.py)
  over the task's classes. Results are cached per (frame, task, option), so a model runs at most
  once per frame and option however many policies use it, and only when asked: the runner asks
  for the on-car result always and for a cloud option only when its answer arrived in time (the
  oracle asks for every option: it knows per-frame utilities by definition).

A utility of ``None`` means undefined (the frame has no label of the evaluated classes); such
task-frames are left out of means, for every policy alike (EmptyFrameRule.EXCLUDE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from carlink.datasets.frames import CameraName
from carlink.detection import Detection, WaymoClass
from carlink.replay.evaluation import Label, frame_ap
from carlink.replay.per_frame import FrameValue, PerFrameIndex, missing_measurements
from carlink.replay.player import PlayedFrame
from carlink.replay.profile_view import ReplayTask
from carlink.tasks import Option

if TYPE_CHECKING:
    from carlink.replay.profile_view import ReplayProfile


class UtilitySource(Protocol):
    mode: str

    def utility(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> float | None: ...

    def payload(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> int: ...


def has_camera(pf: PlayedFrame, task: ReplayTask) -> bool:
    return task.camera in pf.cameras()


def labelled(pf: PlayedFrame, task: ReplayTask) -> bool:
    """Does the task's camera have a label of the task's classes (any label where the task names
    none) on this frame? Without one the frame's utility is undefined (EmptyFrameRule.EXCLUDE)."""
    labels = pf.frame.labels.get(CameraName[task.camera], ())
    if not task.classes:
        return bool(labels)
    return any(lab.type in task.classes for lab in labels)


class ProfileUtilities:
    """Per-frame values from the planning profile where it measured the image, else aggregates.

    ``profile``: look images up in any task of the profile (replay/per_frame.py); without it, only
    in the task's own per-frame lists."""

    mode = "profile"

    def __init__(self, profile: "ReplayProfile | None" = None) -> None:
        self._index = PerFrameIndex(profile.profile) if profile is not None else None

    def _measured(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> FrameValue | None:
        fid = pf.source_id(task.camera)
        if self._index is not None:
            return self._index.value(task.name, fid, option.id)
        k = task.frame_index.get(fid)
        utilities = task.frame_utilities.get(option.id)
        if k is None or utilities is None:
            return None
        payloads = task.frame_payloads.get(option.id)
        return FrameValue(utilities[k], None if payloads is None else int(payloads[k]))

    def utility(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> float | None:
        v = self._measured(pf, task, option)
        if v is not None:
            return v.utility
        return option.aggregate_utility if labelled(pf, task) else None

    def payload(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> int:
        if option.on_car:
            return 0
        v = self._measured(pf, task, option)
        if v is not None and v.payload is not None:
            return v.payload
        return int(round(option.payload_bytes_mean))


class TruthError(ValueError):
    """A --truth profile that cannot serve as ground truth for these frames."""


def check_truth(index: PerFrameIndex, frames: Sequence[PlayedFrame], tasks: Sequence[ReplayTask], path: str) -> None:
    """Refuse a truth profile that lacks a task-frame or an option of the replay, naming them."""
    missing, never = missing_measurements(index, frames, tasks)
    if never:
        raise TruthError(f"truth profile {path} has no per-frame measurement of {_some(never)} "
                         "(options are matched by id)")
    if missing:
        raise TruthError(f"truth profile {path} lacks {len(missing)} frame{'s' if len(missing) != 1 else ''} "
                         f"of the scene: {_some(missing)}")


def _some(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


class TruthUtilities:
    """Per-frame utilities and payloads from a measurement profile (``--truth``): what really
    happens on each evaluation frame, while the car plans with another profile."""

    mode = "truth"

    def __init__(self, truth: "ReplayProfile") -> None:
        self.path = truth.path
        self.index = PerFrameIndex(truth.profile)

    def check(self, frames: Sequence[PlayedFrame], tasks: Sequence[ReplayTask]) -> None:
        check_truth(self.index, frames, tasks, self.path)

    def _value(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> FrameValue:
        fid = pf.source_id(task.camera)
        v = self.index.value(task.name, fid, option.id)
        if v is None:
            raise TruthError(f"truth profile {self.path} lacks frame {fid} (task {task.name}, option {option.id})")
        return v

    def utility(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> float | None:
        return self._value(pf, task, option).utility

    def payload(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> int:
        if option.on_car:
            return 0
        v = self._value(pf, task, option)
        if v.payload is None:
            raise TruthError(f"truth profile {self.path}: option {option.id} has no per-frame payloads")
        return v.payload


class MeasuredUtilities:
    """Runs the models (zoo names from the profile) on the real frames; caches every result."""

    mode = "measured"

    def __init__(self, device: str = "cpu") -> None:
        self._device = device
        self._models: dict = {}
        self._images: dict[tuple[int, str], np.ndarray] = {}
        self._results: dict[tuple[int, str, str], tuple[float | None, int]] = {}
        self._payloads: dict[tuple[int, str, str], int] = {}
        self.model_runs = 0

    def _model(self, name: str):
        if name not in self._models:
            from carlink.zoo.registry import get_model

            self._models[name] = get_model(name, device=self._device)
        return self._models[name]

    def _image(self, pf: PlayedFrame, camera: str) -> np.ndarray:
        key = (pf.index, camera)
        if key not in self._images:
            im = pf.frame.image(CameraName[camera])
            if im is None:
                raise ValueError(f"frame {pf.frame_id}: no {camera} image")
            if len(self._images) > 64:  # bounded: frames are replayed in order
                self._images.pop(next(iter(self._images)))
            self._images[key] = im.decode()
        return self._images[key]

    def _classes(self, task: ReplayTask, model_names: list[str]) -> tuple[WaymoClass, ...]:
        if task.classes:
            return task.classes
        from carlink.zoo.registry import get_spec

        common = set.intersection(*(set(get_spec(m).classes) for m in model_names))
        return tuple(sorted(common)) or tuple(sorted(get_spec(model_names[0]).classes))

    def _measure(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> tuple[float | None, int]:
        key = (pf.index, task.name, option.id)
        if key in self._results:
            return self._results[key]
        image = self._image(pf, task.camera)
        payload = 0
        if option.on_car:
            dets = self._model(option.model).detect(image)
        else:
            dets, payload = self._cloud(image, option)
        self.model_runs += 1
        labels = [Label(lab.box, lab.type) for lab in pf.frame.labels.get(CameraName[task.camera], ())]
        classes = self._classes(task, [task.on_car.model, *{o.model for o in task.options[1:]}])
        ap = frame_ap(labels, dets, classes).mean
        self._results[key] = (ap, payload)
        return ap, payload

    def _cloud(self, image: np.ndarray, option: Option) -> tuple[list[Detection], int]:
        from carlink.cloud.decode import DecodeLimits, decode
        from carlink.onboard.encoder import encode_image
        from carlink.onboard.pipeline import encode_spec
        from carlink.proto import inference_pb2 as pb

        enc = encode_image(image, encode_spec(option))
        encoding = {"jpeg": pb.ENCODING_JPEG, "png": pb.ENCODING_PNG, "raw": pb.ENCODING_RAW_BGR}[enc.codec]
        limits = DecodeLimits(max_payload_bytes=1 << 30, max_pixels=1 << 28, max_side=1 << 15)
        decoded = decode(enc.payload, encoding, enc.size, limits)
        dets = self._model(option.model).detect(decoded)
        sx = enc.original_size[0] / enc.size[0]
        sy = enc.original_size[1] / enc.size[1]
        if sx != 1.0 or sy != 1.0:
            dets = [Detection(d.box.scaled(sx, sy), d.score, d.cls) for d in dets]
        return dets, len(enc.payload)

    def utility(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> float | None:
        return self._measure(pf, task, option)[0]

    def payload(self, pf: PlayedFrame, task: ReplayTask, option: Option) -> int:
        """Real encoded bytes; encoding only (the model runs when the utility is asked for)."""
        if option.on_car:
            return 0
        key = (pf.index, task.name, option.id)
        if key in self._results:
            return self._results[key][1]
        if key not in self._payloads:
            from carlink.onboard.encoder import encode_image
            from carlink.onboard.pipeline import encode_spec

            enc = encode_image(self._image(pf, task.camera), encode_spec(option))
            self._payloads[key] = len(enc.payload)
        return self._payloads[key]
