"""Reader of TF-Object-Detection-API ``tf.train.Example`` records of Waymo camera frames.

Made for the real 1 Hz Waymo front-camera sequences of Udacity's nd013 preprocessing (see
shared/data/README.md, section 1b): one Example per frame with ``image/encoded`` (JPEG, resized to
``image/width`` x ``image/height``), boxes normalised to [0, 1] in ``image/object/bbox/{xmin,
xmax,ymin,ymax}`` and Waymo ``Label.Type`` numbers in ``image/object/class/label``.

What the records lack, and what this reader does about it:

* no timestamps: ``Frame.timestamp_micros`` is None and ``Frame.frame_index`` is the frame's index
  in its 10 Hz Waymo segment, parsed from ``image/filename`` (``..._<index>.tfrecord``);
* no camera name: it is FRONT (the preprocessing kept that camera only), unless a
  ``image/camera`` feature says otherwise;
* no object ids: ``CameraLabel.id`` is "";
* boxes are normalised: they are converted to pixels of the STORED image (``image/width`` and
  ``image/height``, 640 x 640 here), which is the image a detector will see.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator

from google.protobuf.message import DecodeError as ProtobufDecodeError

from carlink.datasets import tf_example_pb2 as pb
from carlink.datasets.errors import DecodeError
from carlink.datasets.frames import CameraImage, CameraLabel, CameraName, Frame, FrameSource
from carlink.datasets.imagesize import image_format, image_size
from carlink.datasets.tfrecord import Record, parse_record, read_decoded
from carlink.detection import Box2D, WaymoClass

FORMAT = "tf-example"
_FILENAME = re.compile(r"^(?:segment-)?(?P<context>.+?)(?:_with_camera_labels)?_(?P<index>\d+)(?:\.\w+)?$")
_BOX_KEYS = ("image/object/bbox/xmin", "image/object/bbox/xmax", "image/object/bbox/ymin", "image/object/bbox/ymax")


def parse_example(record: Record, path: str | os.PathLike[str]) -> pb.Example:
    message = parse_record(record, path, pb.Example(), "tf.train.Example")
    if "image/encoded" not in message.features.feature:
        raise DecodeError(
            path, record.index, record.offset,
            "expected a tf.train.Example with an 'image/encoded' feature; features present: "
            f"{sorted(message.features.feature)[:10]}",
        )
    return message


def is_image_example(data: bytes) -> bool:
    """True if ``data`` parses as a tf.train.Example holding an ``image/encoded`` feature."""
    message = pb.Example()
    try:
        message.ParseFromString(data)
    except ProtobufDecodeError:
        return False
    return "image/encoded" in message.features.feature


def context_and_index(filename: str) -> tuple[str, int | None]:
    """('10017..._6380_000_6400_000', 190) from 'segment-10017..._with_camera_labels_190.tfrecord'."""
    match = _FILENAME.match(filename)
    if not match:
        return filename, None
    return match["context"], int(match["index"])


def frame_from_example(message: pb.Example, source: FrameSource) -> Frame:
    features = message.features.feature

    def values(key: str, kind: str) -> list:
        if key not in features:
            return []
        feature = features[key]
        if feature.WhichOneof("kind") != kind:
            raise DecodeError(
                source.path, source.record_index, source.offset,
                f"feature {key!r}: expected {kind}, found {feature.WhichOneof('kind')}",
            )
        return list(getattr(feature, kind).value)

    def problem(msg: str) -> DecodeError:
        return DecodeError(source.path, source.record_index, source.offset, msg)

    data = values("image/encoded", "bytes_list")
    if len(data) != 1:
        raise problem(f"feature 'image/encoded': expected 1 image, found {len(data)}")
    image_bytes = data[0]
    width, height = (values("image/width", "int64_list") or [0])[0], (values("image/height", "int64_list") or [0])[0]
    if not (width and height):
        width, height = image_size(image_bytes) or (0, 0)
    if not (width and height):
        raise problem("no image size: 'image/width'/'image/height' missing and the image header unreadable")
    filename = (values("image/filename", "bytes_list") or values("image/source_id", "bytes_list") or [b""])[0]
    context, index = context_and_index(filename.decode("utf-8", "replace"))
    camera_name = (values("image/camera", "bytes_list") or [b"FRONT"])[0].decode()
    try:
        camera = CameraName[camera_name]
    except KeyError:
        raise problem(f"feature 'image/camera': unknown camera {camera_name!r}") from None

    xmin, xmax, ymin, ymax = (values(k, "float_list") for k in _BOX_KEYS)
    classes = values("image/object/class/label", "int64_list")
    n = len(xmin)
    if not (len(xmax) == len(ymin) == len(ymax) == len(classes) == n):
        raise problem(
            f"box features disagree in length: xmin {n}, xmax {len(xmax)}, ymin {len(ymin)}, "
            f"ymax {len(ymax)}, class/label {len(classes)}"
        )
    labels = []
    for i in range(n):
        try:
            cls = WaymoClass(classes[i])
        except ValueError:
            raise problem(f"object {i}: class label {classes[i]} is not a Waymo Label.Type") from None
        box = Box2D.from_xyxy(xmin[i] * width, ymin[i] * height, xmax[i] * width, ymax[i] * height)
        labels.append(CameraLabel(box, cls, ""))
    image = CameraImage(
        camera=camera, width=int(width), height=int(height), data=image_bytes,
        encoding=image_format(image_bytes) or "unknown", pose_timestamp=None,
    )
    return Frame(
        context_name=context, timestamp_micros=None, frame_index=index, images=(image,),
        labels={camera: tuple(labels)}, source=source,
    )


def read_tf_example_frames(path: str | os.PathLike[str], **options: Any) -> Iterator[Frame]:
    """Stream the frames of a TF-Example TFRecord file (see the module docstring); ``options``
    as for :func:`carlink.datasets.tfrecord.read_decoded`."""
    return read_decoded(path, _frame_of, **options)


def _frame_of(record: Record, path: str | os.PathLike[str]) -> Frame:
    """The record as a Frame; any value outside what the reader expects is a DecodeError naming it."""
    source = FrameSource(str(path), record.index, record.offset, FORMAT)
    try:
        return frame_from_example(parse_example(record, path), source)
    except DecodeError:
        raise
    except ValueError as exc:  # e.g. a camera name that is not UTF-8
        raise DecodeError(path, record.index, record.offset, f"not a valid image tf.train.Example: {exc}") from None
