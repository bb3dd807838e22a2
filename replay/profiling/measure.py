"""Measuring: every model run on every frame of every task, with the car's and the cloud's code.

For each frame and task: the camera image is decoded and the **on-car** model runs on it; for
every cloud option the image is resized and encoded with the car's own encoder
(:func:`carlink.onboard.encoder.encode_image`, so payloads are the bytes the car would send),
decoded with the cloud's own decoder (:func:`carlink.cloud.decode.decode`), and the option's
model runs on the result; its boxes are scaled back to the original pixels and matched against
the frame's labels per evaluated class (:func:`carlink.replay.evaluation.match_frame`). Runtime is
decode + detect for a cloud option (the cloud's critical path), detect for the on-car model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from carlink.cloud.decode import DecodeLimits, decode
from carlink.datasets.frames import CameraName, Frame
from carlink.detection import Detection, WaymoClass
from carlink.onboard.encoder import encode_image
from carlink.onboard.pipeline import encode_spec
from carlink.proto import inference_pb2 as pb
from carlink.replay.evaluation import Label, match_frame
from carlink.replay.profiling.checkpoint import ON_CAR_ID, Checkpoint, ClassRecord, Measurement
from carlink.replay.profiling.config import ProfileConfig
from carlink.replay.profiling.errors import ProfilingStopped
from carlink.replay.profiling.frames import FrameRef
from carlink.replay.profiling.options import OptionSpec
from carlink.replay.profiling.tasks import TaskKey
from carlink.tasks import Option
from carlink.zoo.base import Detector
from carlink.zoo.registry import get_model

_DECODE_LIMITS = DecodeLimits(max_payload_bytes=1 << 30, max_pixels=1 << 28, max_side=1 << 15)
_PB_ENCODING = {"jpeg": pb.ENCODING_JPEG, "png": pb.ENCODING_PNG, "raw": pb.ENCODING_RAW_BGR}


@dataclass
class RunResult:
    measured: int = 0  # measured in this run
    reused: int = 0  # read back from the checkpoint


def labels_of(frame: Frame, camera: CameraName) -> list[Label]:
    return [Label(lab.box, lab.type) for lab in frame.labels.get(camera, ())]


def evaluate(labels: list[Label], dets: list[Detection], classes: Sequence[WaymoClass]) -> dict[str, ClassRecord]:
    """Per evaluated class, the frame's matches as the checkpoint stores them."""
    fm = match_frame(labels, dets, classes)
    return {cls.label: ClassRecord.of(fm.classes[cls]) for cls in classes}


def timed_detect(model: Detector, image: np.ndarray) -> tuple[list[Detection], float]:
    t0 = cv2.getTickCount()
    dets = model.detect(image)
    return dets, (cv2.getTickCount() - t0) * 1000.0 / cv2.getTickFrequency()


def car_option(o: OptionSpec, width: int, height: int) -> Option:
    """The allocator option the car would act on for an image of this size."""
    return Option(id=o.id, utility=0.0, payload_bytes=1.0, model=o.model, resize=o.target(width, height),
                  codec=o.codec.codec, jpeg_quality=o.codec.jpeg_quality)


def encode_decode(image: np.ndarray, o: OptionSpec) -> tuple[np.ndarray, int, float]:
    """The car's encoder, then the cloud's decoder: (decoded image, payload bytes, decode ms)."""
    h, w = image.shape[:2]
    enc = encode_image(image, encode_spec(car_option(o, w, h)))
    t0 = cv2.getTickCount()
    out = decode(enc.payload, _PB_ENCODING[enc.codec], enc.size, _DECODE_LIMITS)
    ms = (cv2.getTickCount() - t0) * 1000.0 / cv2.getTickFrequency()
    return out, len(enc.payload), ms


class ModelCache:
    """Each model loaded once, when first needed, on the configured backend."""

    def __init__(self, backend: str) -> None:
        self._backend = backend
        self._loaded: dict[str, Detector] = {}

    def __call__(self, name: str) -> Detector:
        if name not in self._loaded:
            self._loaded[name] = get_model(name, backend=self._backend)
        return self._loaded[name]


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
    classes = config.classes()
    options = config.options()
    model = ModelCache(config.backend)
    result = RunResult()

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
            todo = [o for o in options if (ref.id, tk.name, o.id) not in checkpoint.done]
            need_on_car = (ref.id, tk.name, ON_CAR_ID) not in checkpoint.done
            result.reused += len(options) - len(todo) + (not need_on_car)
            if todo or need_on_car:
                image = cam_image.decode()
                labels = labels_of(ref.frame, tk.camera)
                if need_on_car:
                    dets, ms = timed_detect(model(config.onboard), image)
                    record(Measurement(ref.id, tk.name, ON_CAR_ID, None, ms, evaluate(labels, dets, classes)))
                measure_options(image, labels, todo, ref.id, tk.name, classes, model, record)
            if progress is not None:
                progress(1)
    return result


def measure_options(image, labels, todo: list[OptionSpec], frame_id: str, task: str,
                     classes, model: ModelCache, record: Callable[[Measurement], None]) -> None:
    """The cloud options of one image. Each payload is encoded and decoded once, and a model runs
    once per payload: options that send the same bytes (``input`` and ``native`` where the model's
    input is the camera's size) share one run."""
    h, w = image.shape[:2]
    decoded: dict[tuple, tuple[np.ndarray, int, float]] = {}
    runs: dict[tuple, tuple[dict, float]] = {}
    for o in todo:
        k = (o.target(w, h), o.codec.label)
        if k not in decoded:
            decoded[k] = encode_decode(image, o)
        payload_img, n_bytes, decode_ms = decoded[k]
        if (o.model, k) not in runs:
            dets, ms = timed_detect(model(o.model), payload_img)
            ph, pw = payload_img.shape[:2]
            sx, sy = w / pw, h / ph
            dets = [Detection(d.box.scaled(sx, sy), d.score, d.cls) for d in dets]
            runs[(o.model, k)] = (evaluate(labels, dets, classes), decode_ms + ms)
        matches, ms = runs[(o.model, k)]
        record(Measurement(frame_id, task, o.id, n_bytes, ms, matches))
