"""Image width and height from the JPEG/PNG header, without decoding any pixels."""

from __future__ import annotations

import struct

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_format(data: bytes) -> str | None:
    """'jpeg', 'png' or None, from the magic bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == _PNG_MAGIC:
        return "png"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a JPEG or PNG image; None when not found."""
    fmt = image_format(data)
    if fmt == "png":
        if len(data) < 24:
            return None
        width, height = struct.unpack_from(">II", data, 16)
        return int(width), int(height)
    if fmt == "jpeg":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments from after SOI until a start-of-frame segment; each segment is
    # 0xFF, marker, uint16 length (which includes itself). Entropy-coded data only follows SOS,
    # which comes after the frame header, so no scan of pixel data is needed.
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (seg_len,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF_MARKERS:
            if pos + 9 > n:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return int(width), int(height)
        if marker == 0xDA:  # start of scan before any frame header: malformed
            return None
        pos += 2 + seg_len
    return None
