"""Reader (and writer, for tests and the synthetic example) of Waymo Open Dataset v1 Frame records.

The protobuf classes come from this package's own ``waymo_frame.proto``, which declares with the
official field numbers the part of ``waymo.open_dataset.Frame`` that carlink uses.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from carlink.datasets import waymo_frame_pb2 as pb
from carlink.datasets.errors import DecodeError
from carlink.datasets.frames import (
    CameraCalibration,
    CameraImage,
    CameraLabel,
    CameraName,
    ContextStats,
    Frame,
    FrameSource,
)
from carlink.datasets.imagesize import image_format, image_size
from carlink.datasets.tfrecord import Record, parse_record, read_decoded
from carlink.detection import Box2D, WaymoClass

FORMAT = "waymo-frame"


def parse_frame_proto(record: Record, path: str | os.PathLike[str]) -> pb.Frame:
    """Parse one record as a Frame; a payload that is not one raises DecodeError."""
    return parse_record(record, path, pb.Frame(), "waymo.open_dataset.Frame")


def frame_from_proto(message: pb.Frame, source: FrameSource | None = None) -> Frame:
    """Convert a parsed Frame message to carlink's Frame (no image is decoded)."""
    ctx = message.context
    calibrations = {
        CameraName(c.name): CameraCalibration(CameraName(c.name), c.width, c.height)
        for c in ctx.camera_calibrations
    }
    images = []
    for im in message.images:
        camera = CameraName(im.name)
        data = im.image
        size = image_size(data)
        if size is None:  # not a JPEG/PNG header we can read: fall back on the calibration
            cal = calibrations.get(camera)
            size = (cal.width, cal.height) if cal else (0, 0)
        images.append(CameraImage(
            camera=camera, width=size[0], height=size[1], data=data,
            encoding=image_format(data) or "unknown",
            pose_timestamp=im.pose_timestamp if im.HasField("pose_timestamp") else None,
        ))
    labels = {
        CameraName(cl.name): tuple(
            CameraLabel(
                Box2D(lb.box.center_x, lb.box.center_y, lb.box.length, lb.box.width),
                WaymoClass(lb.type), lb.id,
            )
            for lb in cl.labels
        )
        for cl in message.camera_labels
    }
    return Frame(
        context_name=ctx.name,
        timestamp_micros=message.timestamp_micros if message.HasField("timestamp_micros") else None,
        frame_index=source.record_index if source else None,
        images=tuple(images),
        labels=labels,
        calibrations=calibrations,
        stats=ContextStats(ctx.stats.time_of_day, ctx.stats.location, ctx.stats.weather),
        n_laser_labels=len(message.laser_labels),
        source=source,
    )


def read_waymo_frames(path: str | os.PathLike[str], **options: Any) -> Iterator[Frame]:
    """Stream the Frames of a Waymo v1 TFRecord file, one record in memory at a time.

    ``options`` as for :func:`carlink.datasets.tfrecord.read_decoded` (``verify_crc``,
    ``max_record_bytes``, ``skip_corrupt``, ``reader``): with ``skip_corrupt`` records that fail
    their CRC or do not parse are skipped and counted in ``reader.report``.
    """
    return read_decoded(path, _frame_of, **options)


def _frame_of(record: Record, path: str | os.PathLike[str]) -> Frame:
    """The record as a Frame; a payload that parses but holds values outside the schema (an
    unknown camera or label type) is a DecodeError too, naming the record."""
    message = parse_frame_proto(record, path)
    try:
        return frame_from_proto(message, FrameSource(str(path), record.index, record.offset, FORMAT))
    except ValueError as exc:
        raise DecodeError(path, record.index, record.offset, f"not a valid waymo.open_dataset.Frame: {exc}") from None


def frame_to_proto(frame: Frame) -> pb.Frame:
    """The inverse of :func:`frame_from_proto` for the fields carlink models (used for writing)."""
    message = pb.Frame()
    ctx = message.context
    ctx.name = frame.context_name
    ctx.stats.time_of_day = frame.stats.time_of_day
    ctx.stats.location = frame.stats.location
    ctx.stats.weather = frame.stats.weather
    for cal in frame.calibrations.values():
        c = ctx.camera_calibrations.add()
        c.name, c.width, c.height = int(cal.camera), cal.width, cal.height
    if frame.timestamp_micros is not None:
        message.timestamp_micros = frame.timestamp_micros
    for im in frame.images:
        m = message.images.add()
        m.name = int(im.camera)
        m.image = im.data
        if im.pose_timestamp is not None:
            m.pose_timestamp = im.pose_timestamp
    for camera, labels in frame.labels.items():
        cl = message.camera_labels.add()
        cl.name = int(camera)
        for label in labels:
            lb = cl.labels.add()
            lb.box.center_x, lb.box.center_y = label.box.center_x, label.box.center_y
            lb.box.length, lb.box.width = label.box.length, label.box.width
            lb.type = int(label.type)
            lb.id = label.id
    for _ in range(frame.n_laser_labels):
        message.laser_labels.add()
    return message
