"""One baseline JPEG from horizontal strips encoded separately, joined with restart markers.

Why: a frame's five camera images do not split evenly over two cores (three 2.5 MP images and
two 1.7 MP ones), and one image is one libjpeg call. Cut into strips whose height is a whole
number of MCU rows, each strip encodes on its own (in parallel), and the strips' entropy-coded
data are valid restart intervals of the whole image: the decoder resets its DC predictors at
each RSTn marker exactly as the strip encoder started from zero. The result decodes to the same
pixels as encoding the image in one call (the tests check this), with a DRI segment and one
restart marker per strip as the only difference in the file.

Needs the strips encoded with identical tables (same quality, no optimised Huffman tables, as
``cv2.imencode`` does by default); ``join_strips`` checks this and refuses otherwise.
"""

from __future__ import annotations

import struct

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_SOF0, _SOF2, _DRI, _SOS = 0xC0, 0xC2, 0xDD, 0xDA
MAX_RESTART_INTERVAL = 0xFFFF  # MCUs: DRI holds 16 bits


class StripJoinError(ValueError):
    """The strips cannot be joined (message says why); encode the image whole instead."""


def strip_rows(height: int, strips: int, mcu_rows: int = 16) -> int:
    """Rows per strip: ``height`` split in ``strips`` parts, rounded up to whole MCU rows.

    16 fits 4:2:0 (MCU 16 rows) and 4:4:4 / 4:2:2 (8 rows) alike.
    """
    per = -(-height // strips)
    return -(-per // mcu_rows) * mcu_rows


def _segments(jpeg: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """(marker, start, end) of each header segment up to and including SOS; and the scan's start."""
    if not jpeg.startswith(_SOI):
        raise StripJoinError("strip is not a JPEG (no SOI marker)")
    segs = []
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            raise StripJoinError(f"strip header: expected a marker at byte {i}")
        marker = jpeg[i + 1]
        (length,) = struct.unpack_from(">H", jpeg, i + 2)
        end = i + 2 + length
        segs.append((marker, i, end))
        if marker == _SOS:
            return segs, end
        i = end
    raise StripJoinError("strip has no SOS segment")


def _frame_geometry(jpeg: bytes, sof: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """(height, width, MCU width, MCU height) from a SOF segment."""
    _, start, _ = sof
    height, width, ncomp = struct.unpack_from(">HHB", jpeg, start + 5)
    factors = [jpeg[start + 10 + 3 * c + 1] for c in range(ncomp)]
    hmax = max(f >> 4 for f in factors)
    vmax = max(f & 0x0F for f in factors)
    return height, width, 8 * hmax, 8 * vmax


def join_strips(strips: list[bytes], height: int) -> bytes:
    """The JPEG of the whole image (``height`` rows) from its strips, top to bottom.

    Every strip but the last must hold the same whole number of MCU rows.
    """
    if not strips:
        raise StripJoinError("no strips")
    if len(strips) == 1:
        return strips[0]
    parsed = []
    for k, s in enumerate(strips):
        segs, scan = _segments(s)
        if not s.endswith(_EOI):
            raise StripJoinError(f"strip {k} does not end with EOI")
        sofs = [g for g in segs if g[0] == _SOF0]
        if len(sofs) != 1 or any(g[0] in (_SOF2, _DRI) for g in segs):
            raise StripJoinError(f"strip {k}: only baseline JPEGs without restart intervals can be joined")
        parsed.append((segs, scan, sofs[0]))
    segs0, scan0, sof0 = parsed[0]
    rows, width, mcu_w, mcu_h = _frame_geometry(strips[0], sof0)
    if rows % mcu_h:
        raise StripJoinError(f"strip rows {rows} are not a whole number of {mcu_h}-row MCUs")
    interval = -(-width // mcu_w) * (rows // mcu_h)
    if interval > MAX_RESTART_INTERVAL:
        raise StripJoinError(f"restart interval {interval} MCUs exceeds {MAX_RESTART_INTERVAL}")
    head0 = strips[0][:sof0[1] + 5] + strips[0][sof0[1] + 7:scan0]  # all but the SOF height
    total = 0
    for k, (s, (segs, scan, sof)) in enumerate(zip(strips, parsed)):
        h, w, _, _ = _frame_geometry(s, sof)
        if w != width or (k < len(strips) - 1 and h != rows):
            raise StripJoinError(f"strip {k} is {w}x{h}, expected {width}x{rows} (the last may be shorter)")
        if s[:sof[1] + 5] + s[sof[1] + 7:scan] != head0:
            raise StripJoinError(f"strip {k} was encoded with other tables or settings than strip 0")
        total += h
    if total != height:
        raise StripJoinError(f"strips hold {total} rows, expected {height}")
    sof_at = sof0[1]
    header = (strips[0][:sof_at + 5] + struct.pack(">H", height) + strips[0][sof_at + 7:segs0[-1][1]]
              + struct.pack(">BBHH", 0xFF, _DRI, 4, interval) + strips[0][segs0[-1][1]:scan0])
    out = [header]
    for k, (s, (_, scan, _)) in enumerate(zip(strips, parsed)):
        if k:
            out.append(bytes((0xFF, 0xD0 + (k - 1) % 8)))
        out.append(memoryview(s)[scan:-2])  # no copy until the join
    out.append(_EOI)
    return b"".join(out)
