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
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from carlink.clock import Clock, WallClock
from carlink.onboard.config import SourceConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class SourceError(RuntimeError):
    """A frame source cannot be opened or read (message names the path or device)."""


@dataclass(frozen=True, slots=True)
class SkippedInput:
    """Input a source could not use and went on without: a corrupt record, an undecodable image,
    a file it cannot read. ``reason`` is a short label (a metric label), ``detail`` the problem."""

    path: str
    record: int | None
    offset: int | None  # byte offset of the record's header in the file
    reason: str  # "corrupt_record", "undecodable_image", "unreadable_file"
    detail: str

    def describe(self) -> str:
        where = self.path if self.record is None else f"{self.path}: record {self.record} at byte offset {self.offset}"
        return f"{where}: {self.detail}"


def log_skipped(skipped: SkippedInput) -> None:
    log.warning("source skipped %s reason=%s", skipped.describe(), skipped.reason)


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


def _timed(items: Callable[[], Iterable[tuple[float | None, dict[str, np.ndarray], str]]], rate_hz: float,
           loop: bool) -> Iterator[tuple[float, dict[str, np.ndarray], str]]:
    """Give every item a source time: its own where it has one, else 1/rate apart; loop on demand.

    Each round reads the source afresh (``items()``): holding a looped scene's decoded images
    would take memory in proportion to the scene (gigabytes for five full-size cameras), and a
    file that goes bad between rounds is noticed.
    """
    period = 1.0 / rate_hz
    offset = 0.0
    while True:
        last = None
        first = None
        for i, (t, images, origin) in enumerate(items()):
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
        # Told of every input skipped; the daemon counts and logs them.
        self.on_skip: Callable[[SkippedInput], None] = log_skipped

    def available_cameras(self) -> set[str] | None:
        """Cameras this source delivers (after check()); None when it cannot tell (every camera)."""
        return None

    def _raw(self) -> Iterable[tuple[float | None, dict[str, np.ndarray], str]]:
        raise NotImplementedError

    def check(self) -> None:
        """Raise SourceError now if the source cannot deliver (missing path, no files), so the daemon
        refuses a bad config before READY=1 or at SIGHUP instead of failing at the first frame."""

    def __iter__(self) -> Iterator[CapturedFrame]:
        pacer = _Pacer(self.clock, self.stop, self.cfg.realtime)
        n = 0
        for st, images, origin in _timed(self._raw, self.cfg.rate_hz, self.cfg.loop):
            if self.cfg.max_frames is not None and n >= self.cfg.max_frames:
                return
            if not pacer.wait(st):
                return
            yield CapturedFrame(n, self.clock.now(), images, origin)
            n += 1

    def close(self) -> None:
        pass


class RecordedSceneSource(FrameSourceBase):
    """Waymo v1 Frame or TF-Example TFRecords, through carlink.datasets.

    A corrupt record (CRC mismatch, truncation, a payload that does not parse) or an image that
    does not decode is skipped and reported through ``on_skip`` with its file, record and offset;
    a file that cannot be read or is not a TFRecord is skipped the same way. Only when no file
    yields a single readable record does iteration raise SourceError (the daemon then reports
    itself degraded and retries).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cameras_seen: set[str] | None = None

    def _files(self) -> list[Path]:
        path = Path(self.cfg.path or "")
        if not path.exists():
            raise SourceError(f"source path {path} does not exist")
        files = sorted(path.glob("*.tfrecord")) if path.is_dir() else [path]
        if not files:
            raise SourceError(f"no *.tfrecord files in {path}")
        return files

    def check(self) -> None:
        """Read each file up to its first good record: a file that is not a TFRecord, cannot be
        read or holds no readable record is refused here, not met at the first frame."""
        from carlink.datasets.errors import DatasetError, NotATFRecordError
        from carlink.datasets.tfrecord import TFRecordReader

        cameras: set[str] = set()
        for f in self._files():
            reader = TFRecordReader(f, skip_corrupt=True)
            frames = self._read(f, reader)
            try:
                frame = next(frames, None)
            except NotATFRecordError as exc:
                raise SourceError(f"{f}: not a TFRecord file ({exc.problem})") from None
            except OSError as exc:
                raise SourceError(f"{f}: cannot read: {exc.strerror or exc}") from None
            except DatasetError as exc:
                raise SourceError(str(exc)) from None
            finally:
                frames.close()
            if frame is None:
                problem = f"; {reader.report.n_corrupt} corrupt" if reader.report.n_corrupt else ""
                raise SourceError(f"{f}: no readable {self.cfg.kind} record{problem}")
            cameras.update(im.camera.name for im in frame.images)
        self._cameras_seen = cameras

    def available_cameras(self) -> set[str] | None:
        return self._cameras_seen

    def _read(self, f: Path, reader):
        if self.cfg.kind == "waymo":
            from carlink.datasets.waymo import read_waymo_frames as read
        else:
            from carlink.datasets.tf_example import read_tf_example_frames as read
        return read(f, reader=reader)

    def _raw(self) -> Iterator[tuple[float | None, dict[str, np.ndarray], str]]:
        readable = 0
        for f in self._files():
            for item in self._file_frames(f):
                readable += 1
                if item is not None:
                    yield item
        if not readable:
            raise SourceError(f"no readable record in {self.cfg.path} (every file skipped; see the log)")

    def _file_frames(self, f: Path) -> Iterator[tuple[float | None, dict[str, np.ndarray], str] | None]:
        """One item per readable record (None where no watched camera's image could be used)."""
        from carlink.datasets.errors import DatasetError, NotATFRecordError
        from carlink.datasets.tfrecord import TFRecordReader

        reader = TFRecordReader(f, skip_corrupt=True)
        reported = 0
        try:
            for frame in self._read(f, reader):
                reported = self._report_corrupt(reader, reported)
                yield self._frame_item(f, frame)
        except NotATFRecordError as exc:
            self.on_skip(SkippedInput(str(f), None, None, "unreadable_file", f"not a TFRecord file ({exc.problem})"))
        except OSError as exc:
            self.on_skip(SkippedInput(str(f), None, None, "unreadable_file", f"cannot read: {exc.strerror or exc}"))
        except DatasetError as exc:  # skip_corrupt turns record problems into reports; anything left ends the file
            self.on_skip(SkippedInput(str(f), None, None, "unreadable_file", str(exc)))
        self._report_corrupt(reader, reported)

    def _report_corrupt(self, reader, reported: int) -> int:
        """Tell on_skip of the corrupt records the reader met since ``reported``; the new count."""
        corrupt = reader.report.corrupt
        for c in corrupt[reported:]:
            self.on_skip(SkippedInput(str(reader.path), c.index, c.offset, "corrupt_record", c.reason))
        return len(corrupt)

    def _frame_item(self, f: Path, frame) -> tuple[float | None, dict[str, np.ndarray], str] | None:
        origin = f"{f}#{frame.source.record_index}" if frame.source else str(f)
        images: dict[str, np.ndarray] = {}
        for im in frame.images:
            if im.camera.name in self.cameras:
                try:
                    images[im.camera.name] = im.decode()
                except ValueError as exc:  # a valid record holding a broken image: skip that image
                    src = frame.source
                    self.on_skip(SkippedInput(str(f), src.record_index if src else None, src.offset if src else None,
                                              "undecodable_image", str(exc)))
        if not images:
            log.warning("%s: no usable image for cameras %s; frame skipped", origin, sorted(self.cameras))
            return None
        return frame.time_s, images, origin


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

    def available_cameras(self) -> set[str] | None:
        return {self.cfg.camera_name}

    def _raw(self) -> Iterator[tuple[float | None, dict[str, np.ndarray], str]]:
        for p in self._files():
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                self.on_skip(SkippedInput(str(p), None, None, "undecodable_image", "cannot read or decode the image"))
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

    def available_cameras(self) -> set[str] | None:
        return {self.cfg.camera_name}

    def __iter__(self) -> Iterator[CapturedFrame]:
        dev = self.cfg.device
        self.close()  # a retry after a failure opens the device afresh
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
            self._cap = None


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
