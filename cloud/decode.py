"""Turning request payloads into images, with every limit checked before anything is decoded."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from carlink.proto import inference_pb2 as pb
from carlink.wire import JPEG_EOI, ImageHeader, ImageHeaderError, probe_image


class PayloadTooLarge(ValueError):
    """The payload or its pixel dimensions exceed the server's limits."""


class BadImage(ValueError):
    """The payload is not a decodable image of the claimed encoding."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_payload_bytes: int
    max_pixels: int
    max_side: int


def check_header(payload: bytes, encoding: int, payload_size: tuple[int, int] | None,
                 limits: DecodeLimits) -> ImageHeader:
    """Validate sizes from the bytes' length and header alone; raise before any allocation."""
    if len(payload) == 0:
        raise BadImage("empty payload")
    if len(payload) > limits.max_payload_bytes:
        raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}")
    try:
        header = probe_image(payload, encoding, payload_size)
    except ImageHeaderError as exc:
        raise BadImage(str(exc)) from None
    if header.width > limits.max_side or header.height > limits.max_side or header.pixels > limits.max_pixels:
        raise PayloadTooLarge(
            f"image of {header.width}x{header.height} pixels exceeds the limit "
            f"({limits.max_side} per side, {limits.max_pixels} in all)")
    if encoding != pb.ENCODING_RAW_BGR and payload_size and payload_size != (header.width, header.height):
        raise BadImage(f"payload_size {payload_size[0]}x{payload_size[1]} disagrees with the image header "
                       f"{header.width}x{header.height}")
    if encoding == pb.ENCODING_JPEG and not _ends_with_eoi(payload):
        # libjpeg "decodes" a truncated JPEG by padding it with grey; refuse it instead.
        raise BadImage(f"truncated JPEG: no end-of-image marker (FF D9) at the end of {len(payload)} bytes")
    if encoding == pb.ENCODING_PNG and payload[-8:-4] != b"IEND":
        raise BadImage(f"truncated PNG: no IEND chunk at the end of {len(payload)} bytes")
    return header


def decode(payload: bytes, encoding: int, payload_size: tuple[int, int] | None,
           limits: DecodeLimits) -> np.ndarray:
    """An H x W x 3 uint8 BGR image from the payload, after check_header."""
    header = check_header(payload, encoding, payload_size, limits)
    buf = np.frombuffer(payload, dtype=np.uint8)
    if encoding == pb.ENCODING_RAW_BGR:
        return buf.reshape(header.height, header.width, 3)
    if encoding == pb.ENCODING_JPEG:
        image = _decode_jpeg(payload)
    else:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise BadImage(f"{pb.Encoding.Name(encoding)} payload of {len(payload)} bytes could not be decoded")
    if image.shape[1] != header.width or image.shape[0] != header.height:
        raise BadImage(f"decoded image is {image.shape[1]}x{image.shape[0]}, header said {header.width}x{header.height}")
    return image


def _decode_jpeg(payload: bytes) -> np.ndarray:
    """libjpeg-turbo (simplejpeg) with its warnings as errors: a JPEG whose entropy data is corrupt
    ("Corrupt JPEG data: ...") is refused, where cv2.imdecode would return a half-decoded image.
    The pixels are the same as cv2's (same library, same settings)."""
    try:
        return simplejpeg.decode_jpeg(payload, colorspace="BGR", strict=True)
    except ValueError as exc:
        raise BadImage(f"corrupt JPEG ({len(payload)} bytes): {exc}") from None


def _ends_with_eoi(payload: bytes) -> bool:
    # Some encoders pad after EOI; tolerate a little trailing zero padding.
    return payload.rstrip(b"\x00")[-2:] == JPEG_EOI
