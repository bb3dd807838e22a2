"""Helpers the car and the cloud both need for the carlink.v1 wire protocol.

* Reading an image's pixel size from its JPEG/PNG header without decoding it, so a receiver can
  refuse a huge image before allocating it (a 30000x30000 PNG is 2.7 GB once decoded).
* Converting between carlink's Detection and its protobuf message.
* Unix-microsecond timestamps, the unit of the protocol's wall-clock fields.
* Serialising an InferRequest with its image copied once (the car's hot path).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Iterable

from carlink.detection import Box2D, Detection, WaymoClass
from carlink.proto import inference_pb2 as pb

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"

# SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


class ImageHeaderError(ValueError):
    """The bytes are not a well-formed image of the claimed encoding (message says where)."""


@dataclass(frozen=True, slots=True)
class ImageHeader:
    encoding: int  # a pb.Encoding value
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe_png(data: bytes) -> ImageHeader:
    """Read width and height from a PNG's IHDR chunk (the first chunk, at byte 8)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageHeaderError("not a PNG: the 8-byte signature at offset 0 is missing")
    if len(data) < 33:
        raise ImageHeaderError(f"truncated PNG: {len(data)} bytes, the IHDR chunk needs 33")
    length, ctype = struct.unpack_from(">I4s", data, 8)
    if ctype != b"IHDR" or length != 13:
        raise ImageHeaderError(f"malformed PNG: first chunk at offset 8 is {ctype!r} of {length} bytes, expected IHDR of 13")
    width, height = struct.unpack_from(">II", data, 16)
    if width == 0 or height == 0:
        raise ImageHeaderError(f"malformed PNG: IHDR gives a {width}x{height} image")
    return ImageHeader(pb.ENCODING_PNG, width, height)


def probe_jpeg(data: bytes) -> ImageHeader:
    """Read width and height from a JPEG's SOF segment, walking the marker segments from SOI."""
    if not data.startswith(JPEG_SOI):
        raise ImageHeaderError("not a JPEG: the SOI marker (FF D8) at offset 0 is missing")
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise ImageHeaderError(f"malformed JPEG: expected a marker at offset {pos}, found 0x{data[pos]:02X}")
        while pos < n and data[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any SOF
            raise ImageHeaderError(f"malformed JPEG: marker 0x{marker:02X} at offset {pos - 1} before any frame header (SOF)")
        if pos + 2 > n:
            break
        (seglen,) = struct.unpack_from(">H", data, pos)
        if seglen < 2:
            raise ImageHeaderError(f"malformed JPEG: segment 0x{marker:02X} at offset {pos - 1} has length {seglen}")
        if marker in _JPEG_SOF_MARKERS:
            if pos + 7 > n:
                break
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if width == 0 or height == 0:
                raise ImageHeaderError(f"malformed JPEG: SOF at offset {pos - 1} gives a {width}x{height} image")
            return ImageHeader(pb.ENCODING_JPEG, width, height)
        pos += seglen
    raise ImageHeaderError(f"truncated JPEG: no frame header (SOF) in {n} bytes")


def probe_image(data: bytes, encoding: int, raw_size: tuple[int, int] | None = None) -> ImageHeader:
    """The image size in ``data`` for a wire encoding, from headers only (nothing is decoded).

    For ENCODING_RAW_BGR the size comes from ``raw_size`` (width, height) and must match the
    payload length exactly.
    """
    if encoding == pb.ENCODING_JPEG:
        return probe_jpeg(data)
    if encoding == pb.ENCODING_PNG:
        return probe_png(data)
    if encoding == pb.ENCODING_RAW_BGR:
        if raw_size is None or raw_size[0] <= 0 or raw_size[1] <= 0:
            raise ImageHeaderError("raw BGR payload needs payload_size (width and height > 0)")
        w, h = raw_size
        if len(data) != w * h * 3:
            raise ImageHeaderError(f"raw BGR payload of {len(data)} bytes does not match {w}x{h}x3 = {w * h * 3}")
        return ImageHeader(pb.ENCODING_RAW_BGR, w, h)
    name = pb.Encoding.Name(encoding) if encoding in pb.Encoding.values() else str(encoding)
    raise ImageHeaderError(f"unsupported encoding {name}")


def detection_to_proto(d: Detection) -> pb.Detection:
    b = d.box
    return pb.Detection(
        box=pb.Box2D(center_x=b.center_x, center_y=b.center_y, length=b.length, width=b.width),
        score=d.score, cls=int(d.cls),
    )


def detection_from_proto(m: pb.Detection) -> Detection:
    b = m.box
    cls = WaymoClass(m.cls) if m.cls in WaymoClass._value2member_map_ else WaymoClass.UNKNOWN
    return Detection(Box2D(b.center_x, b.center_y, b.length, b.width), float(m.score), cls)


def detections_to_proto(dets: Iterable[Detection]) -> list[pb.Detection]:
    return [detection_to_proto(d) for d in dets]


def detections_from_proto(msgs: Iterable[pb.Detection]) -> list[Detection]:
    return [detection_from_proto(m) for m in msgs]


def unix_us(t: float | None = None) -> int:
    """Microseconds since the Unix epoch (now, or for ``t`` seconds since the epoch)."""
    return int(round((time.time() if t is None else t) * 1e6))


# InferRequest.payload is field 4, wire type 2 (length-delimited).
_PAYLOAD_KEY = bytes([(pb.InferRequest.DESCRIPTOR.fields_by_name["payload"].number << 3) | 2])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def serialize_infer_request(header: pb.InferRequest, payload: bytes) -> bytes:
    """The wire bytes of ``header`` with ``payload`` as its image, copying the image once.

    Setting ``payload`` on the message and serialising it copies a full-size JPEG twice (about
    0.4 ms of the car's per-frame budget per camera); protobuf lets a field follow the others, so
    the small header is serialised alone and the image appended as field 4.
    """
    if header.payload:
        raise ValueError("serialize_infer_request: header already carries a payload")
    if not payload:  # proto3 leaves an empty field out
        return header.SerializeToString()
    return b"".join((header.SerializeToString(), _PAYLOAD_KEY, _varint(len(payload)), payload))
