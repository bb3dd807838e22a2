"""Resize and encode camera images for upload (cv2), several at once on a thread pool.

cv2.resize and cv2.imencode release the GIL, so a small thread pool encodes the cameras of one
frame in parallel on a multi-core car computer. Only images whose task was allocated a cloud
option are encoded, at that option's resize target and codec.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Hashable, Iterator, Literal, TypeVar

import cv2
import numpy as np

from carlink.onboard.jpeg_strips import StripJoinError, join_strips, strip_rows
from carlink.tasks import Option

log = logging.getLogger(__name__)
# Images at least this large, sent at their own size as JPEG, are encoded in strips.
STRIP_MIN_PIXELS = 1_000_000

Codec = Literal["jpeg", "png", "raw"]
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class EncodeSpec:
    """How one image is sent: resize target and codec."""

    codec: Codec
    quality: int = 90  # JPEG quality 1..100; PNG compression level 0..9; ignored for raw
    size: tuple[int, int] | None = None  # (width, height); None keeps the camera's size

    def __post_init__(self) -> None:
        if self.codec not in ("jpeg", "png", "raw"):
            raise ValueError(f"codec {self.codec!r}: expected 'jpeg', 'png' or 'raw'")
        if self.codec == "jpeg" and not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality {self.quality} outside 1..100")
        if self.codec == "png" and not 0 <= self.quality <= 9:
            raise ValueError(f"PNG compression level {self.quality} outside 0..9")
        if self.size is not None and (self.size[0] < 1 or self.size[1] < 1):
            raise ValueError(f"resize target {self.size} must be positive (width, height)")


def encode_spec(option: Option) -> EncodeSpec:
    """The encoder's instructions for a cloud option: its resize target and codec."""
    quality = option.jpeg_quality if option.codec == "jpeg" and option.jpeg_quality else 90
    if option.codec == "png":
        quality = 1  # fast PNG: the car's CPU matters more than a few percent of bytes
    return EncodeSpec(codec=option.codec, quality=quality, size=option.resize)


@dataclass(frozen=True, slots=True)
class EncodedImage:
    payload: bytes
    codec: Codec
    size: tuple[int, int]  # (width, height) of the encoded image
    original_size: tuple[int, int]  # (width, height) before resizing
    encode_s: float  # resize + encode time


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (width, height) without aliasing, fast.

    INTER_AREA is the right filter for downscaling but is slow for non-integer factors (13 ms for
    1920x1280 -> 640x427, against under 1 ms for an integer factor). So the downscale is split: an
    INTER_AREA step by the largest whole factor, then INTER_LINEAR for the remaining < 2x.
    """
    h, w = image.shape[:2]
    k = min(w // size[0], h // size[1])
    if k >= 2:
        image = cv2.resize(image, (w // k, h // k), interpolation=cv2.INTER_AREA)
        if image.shape[1] == size[0] and image.shape[0] == size[1]:
            return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got {shape}")


def encode_image(image: np.ndarray, spec: EncodeSpec) -> EncodedImage:
    """Resize ``image`` (H x W x 3 uint8 BGR) to the spec's size and encode it."""
    _check_image(image)
    t0 = time.perf_counter()
    h, w = image.shape[:2]
    img = image
    if spec.size is not None and spec.size != (w, h):
        img = resize(image, spec.size)
    if spec.codec == "raw":
        payload = np.ascontiguousarray(img).tobytes()
    else:
        ext, params = (
            (".jpg", [cv2.IMWRITE_JPEG_QUALITY, spec.quality])
            if spec.codec == "jpeg"
            else (".png", [cv2.IMWRITE_PNG_COMPRESSION, spec.quality])
        )
        ok, buf = cv2.imencode(ext, img, params)
        if not ok:
            raise RuntimeError(f"cv2.imencode failed for {spec}")
        payload = buf.tobytes()
    return EncodedImage(
        payload=payload,
        codec=spec.codec,
        size=(img.shape[1], img.shape[0]),
        original_size=(w, h),
        encode_s=time.perf_counter() - t0,
    )


class ParallelEncoder:
    """A thread pool encoding many images at once.

    Large JPEGs sent at the camera's size are cut into one strip per thread (onboard/jpeg_strips):
    a frame's images then spread evenly over the cores instead of one large image finishing alone.
    """

    def __init__(self, threads: int = 2, strip_min_pixels: int | None = STRIP_MIN_PIXELS) -> None:
        """``strip_min_pixels``: cut JPEGs at least this large; None never cuts."""
        self.threads = threads
        self.strip_min_pixels = strip_min_pixels
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="encode")

    def submit(self, image: np.ndarray, spec: EncodeSpec) -> "Future[EncodedImage]":
        return self._pool.submit(encode_image, image, spec)

    def _strips(self, image: np.ndarray, spec: EncodeSpec) -> list[np.ndarray]:
        """The image cut into strips to encode apart, or [image] when it is not worth cutting."""
        h, w = image.shape[:2]
        if (self.threads < 2 or self.strip_min_pixels is None or spec.codec != "jpeg" or spec.size not in (None, (w, h))
                or h * w < self.strip_min_pixels):
            return [image]
        rows = strip_rows(h, self.threads)
        return [image[r:r + rows] for r in range(0, h, rows)]

    def encode_as_completed(self, jobs: dict[K, tuple[np.ndarray, EncodeSpec]]) -> Iterator[tuple[K, EncodedImage]]:
        """Encode every (image, spec) in ``jobs`` in parallel; yield (key, image) as each finishes.

        The largest pieces are started first, so that on a few cores the small ones fill in at
        the end. Yielding as they finish lets the caller hand one image to the network while the
        others are still being encoded.
        """
        units = []  # (pixels, key, strip index, piece)
        parts: dict[K, list[EncodedImage | None]] = {}
        for key, (image, spec) in jobs.items():
            _check_image(image)
            pieces = self._strips(image, spec)
            parts[key] = [None] * len(pieces)
            units += [(_output_pixels(p, spec), key, i, p) for i, p in enumerate(pieces)]
        units.sort(key=lambda u: -u[0])
        pending = {self.submit(piece, jobs[key][1]): (key, i) for _, key, i, piece in units}
        for fut in as_completed(pending):
            key, i = pending[fut]
            got = parts[key]
            got[i] = fut.result()
            if all(p is not None for p in got):
                yield key, _joined(jobs[key], got)

    def encode_many(self, jobs: dict[K, tuple[np.ndarray, EncodeSpec]]) -> dict[K, EncodedImage]:
        """Encode every (image, spec) in ``jobs`` in parallel; keys are kept (e.g. task names)."""
        return dict(self.encode_as_completed(jobs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _joined(job: tuple[np.ndarray, EncodeSpec], parts: list[EncodedImage]) -> EncodedImage:
    """One image from its encoded strips (or the image itself when it was not cut)."""
    if len(parts) == 1:
        return parts[0]
    image, spec = job
    h, w = image.shape[:2]
    try:
        payload = join_strips([p.payload for p in parts], h)
    except StripJoinError:  # not expected from cv2's encoder: fall back to one call, correct
        log.exception("joining %d JPEG strips failed; encoding the image whole", len(parts))
        return encode_image(image, spec)
    return EncodedImage(payload, spec.codec, (w, h), (w, h), encode_s=sum(p.encode_s for p in parts))


def _output_pixels(image: np.ndarray, spec: EncodeSpec) -> int:
    if spec.size is not None:
        return spec.size[0] * spec.size[1]
    return image.shape[0] * image.shape[1]
