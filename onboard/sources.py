"""Frame sources for the daemon: recorded scenes paced at their timestamps, image folders, cameras.

Every source yields :class:`CapturedFrame` objects: decoded BGR images per camera name, stamped
with the pipeline clock's time at capture. Recorded sources (Waymo v1 Frame and TF-Example
TFRecords, read by carlink.datasets) are paced at their own timestamps when ``realtime`` is set,
so the daemon sees them as it would see a live car; only the cameras some task watches are
decoded. Waits are interruptible through a stop event, so SIGTERM does not wait out a frame gap.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from carlink.clock import Clock, WallClock
from carlink.onboard.config import SourceConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class SourceError(RuntimeError):
    """A frame source cannot be opened or read (message names the path or device)."""


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    frame_id: int
    capture_time: float  # pipeline clock
    images: dict[str, np.ndarray]  # camera name (e.g. "FRONT") -> H x W x 3 uint8 BGR
    origin: str = ""  # where it came from (file and record, image path, device)


class _Pacer:
    """Sleeps until a frame's due time; the first frame is due at once."""

    def __init__(self, clock: Clock, stop: threading.Event, realtime: bool) -> None:
        self._clock, self._stop, self._realtime = clock, stop, realtime
        self._t0: float | None = None  # clock time of the first frame
        self._s0: float | None = None  # source time of the first frame

    def wait(self, source_t: float) -> bool:
        """Wait until ``source_t`` (seconds, source time) is due; False when stopped meanwhile."""
        if self._stop.is_set():
            return False
        if not self._realtime:
            return True
        if self._t0 is None:
            self._t0, self._s0 = self._clock.now(), source_t
            return True
        delay = self._t0 + (source_t - self._s0) - self._clock.now()
        if delay > 0:
            if isinstance(self._clock, WallClock):
                return not self._stop.wait(delay)
            self._clock.sleep(delay)
        return not self._stop.is_set()


def _timed(items: Iterable[tuple[float | None, dict[str, np.ndarray], str]], rate_hz: float, loop: bool) -> Iterator[tuple[float, dict[str, np.ndarray], str]]:
    """Give every item a source time: its own where it has one, else 1/rate apart; loop on demand."""
    period = 1.0 / rate_hz
    items = list(items) if loop else items
    offset = 0.0
    for rnd in itertools.count():
        last = None
        first = None
        for i, (t, images, origin) in enumerate(items):
            st = t if t is not None else i * period
            first = st if first is None else first
            last = st
            yield st + offset, images, origin
        if not loop or last is None:
            return
        offset += (last - first) + period  # the next round starts one period after the last frame


class FrameSourceBase:
    """Iterates CapturedFrames; ``close`` releases devices and files."""

    def __init__(self, cfg: SourceConfig, clock: Clock, cameras: set[str], stop: threading.Event | None = None) -> None:
        self.cfg, self.clock, self.cameras = cfg, clock, cameras
        self.stop = stop or threading.Event()

    def _raw(self) -> Iterable[tuple[float | None, dict[str, np.ndarray], str]]:
        raise NotImplementedError

    def check(self) -> None:
        """Raise SourceError now if the source cannot deliver (missing path, no files), so the daemon
        refuses a bad config before READY=1 or at SIGHUP instead of failing at the first frame."""

    def __iter__(self) -> Iterator[CapturedFrame]:
        pacer = _Pacer(self.clock, self.stop, self.cfg.realtime)
        n = 0
        for st, images, origin in _timed(self._raw(), self.cfg.rate_hz, self.cfg.loop):
            if self.cfg.max_frames is not None and n >= self.cfg.max_frames:
                return
            if not pacer.wait(st):
                return
            yield CapturedFrame(n, self.clock.now(), images, origin)
            n += 1

    def close(self) -> None:
        pass


class RecordedSceneSource(FrameSourceBase):
    """Waymo v1 Frame or TF-Example TFRecords, through carlink.datasets."""

    def _files(self) -> list[Path]:
        path = Path(self.cfg.path or "")
        if not path.exists():
            raise SourceError(f"source path {path} does not exist")
        files = sorted(path.glob("*.tfrecord")) if path.is_dir() else [path]
        if not files:
            raise SourceError(f"no *.tfrecord files in {path}")
        return files

    def check(self) -> None:
        self._files()

    def _raw(self) -> Iterator[tuple[float | None, dict[str, np.ndarray], str]]:
        files = self._files()
        if self.cfg.kind == "waymo":
            from carlink.datasets.waymo import read_waymo_frames as read
        else:
            from carlink.datasets.tf_example import read_tf_example_frames as read
        for f in files:
            for frame in read(f):
                images: dict[str, np.ndarray] = {}
                for im in frame.images:
                    if im.camera.name in self.cameras:
                        images[im.camera.name] = im.decode()
                origin = f"{f}#{frame.source.record_index}" if frame.source else str(f)
                if not images:
                    log.warning("%s: no image for cameras %s; frame skipped", origin, sorted(self.cameras))
                    continue
                yield frame.time_s, images, origin


class FolderSource(FrameSourceBase):
    """The images of a folder in name order, one frame each, at ``rate_hz``."""

    def _files(self) -> list[Path]:
        folder = Path(self.cfg.path or "")
        if not folder.is_dir():
            raise SourceError(f"source path {folder} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        return files

    def check(self) -> None:
        self._files()

    def _raw(self) -> Iterator[tuple[float | None, dict[str, np.ndarray], str]]:
        for p in self._files():
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                log.warning("%s: cannot decode image; skipped", p)
                continue
            yield None, {self.cfg.camera_name: img}, str(p)


class CameraSource(FrameSourceBase):
    """A live camera through cv2.VideoCapture (index or URL); frames come at the device's pace.

    ``check`` does not open the device: the running source may hold it, and many drivers refuse
    a second opener. A camera that cannot be opened fails at the first frame.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cap: cv2.VideoCapture | None = None

    def __iter__(self) -> Iterator[CapturedFrame]:
        dev = self.cfg.device
        self._cap = cv2.VideoCapture(dev)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open camera {dev!r} with cv2.VideoCapture")
        for n in itertools.count():
            if self.stop.is_set() or (self.cfg.max_frames is not None and n >= self.cfg.max_frames):
                return
            ok, img = self._cap.read()  # blocks until the device delivers: the device paces us
            if not ok:
                raise SourceError(f"camera {dev!r} stopped delivering frames (after {n})")
            yield CapturedFrame(n, self.clock.now(), {self.cfg.camera_name: img}, f"camera:{dev}")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class SyntheticSource(FrameSourceBase):
    """Moving smooth images at ``rate_hz`` for every camera a task watches (soak tests, smoke runs).

    Low-frequency texture, so they compress about as well as camera images do (pure noise would
    make JPEGs several times larger than any profile expects).
    """

    SIZE = (640, 480)  # (width, height)

    def _raw(self) -> Iterator[tuple[float | None, dict[str, np.ndarray], str]]:
        rng = np.random.default_rng(0)
        w, h = self.SIZE
        coarse = rng.integers(0, 256, size=(h // 16, w // 16, 3), dtype=np.uint8)
        base = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        for i in itertools.count():
            shifted = np.roll(base, (7 * i) % w, axis=1)  # new pixels each frame
            yield None, {cam: shifted for cam in self.cameras}, f"synthetic:{i}"


def open_source(cfg: SourceConfig, clock: Clock, cameras: set[str], stop: threading.Event | None = None) -> FrameSourceBase:
    kinds = {
        "waymo": RecordedSceneSource,
        "tf-example": RecordedSceneSource,
        "folder": FolderSource,
        "camera": CameraSource,
        "synthetic": SyntheticSource,
    }
    return kinds[cfg.kind](cfg, clock, cameras, stop)
