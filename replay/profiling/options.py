"""The option grid: which resize x codec pairs ("transports") each cloud model is measured with.

``--options`` is a comma-separated list. Plain items are crossed with each other, as before:
resize targets (``native``, ``x0.5``, ``960x640``, ``input``) with codecs (``jpeg75``, ``png``,
``raw``); codecs without a resize item mean ``native``. Items written ``RESIZE:CODEC`` are single
pairs, not crossed: TURBO's grid is per model {input:jpeg50, input:jpeg90, input:png,
native:jpeg90} (its "input compression" at the model's input size and its "image compression" of
the native frame). Both kinds may be mixed: the crossed pairs come first, then the listed ones.

``input`` is the cloud model's own input size (:attr:`carlink.zoo.base.ModelSpec.input_size`):
the car resizes to exactly what the model would resize to, so it sends no pixel the model drops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from carlink.replay.profiling.errors import ProfilerError

# TURBO-style: the model's input size at three qualities, plus the native frame as JPEG 90.
DEFAULT_OPTIONS = "input:jpeg50,input:jpeg90,input:png,native:jpeg90"

_RESIZE_SCALE = re.compile(r"^x(\d+(?:\.\d+)?)$")
_RESIZE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_JPEG = re.compile(r"^jpe?g(\d{1,3})$")


@dataclass(frozen=True)
class ResizeSpec:
    """A resize target: ``native`` (as captured), ``x0.5`` (scale of each frame), ``960x640``,
    or ``input`` (the cloud model's input size)."""

    label: str
    scale: float | None = None
    size: tuple[int, int] | None = None
    model_input: bool = False

    def target(self, width: int, height: int, input_size: tuple[int, int] | None = None) -> tuple[int, int] | None:
        """The (width, height) an image of this size is resized to; None keeps it as is.
        ``input_size`` is the model's (needed for ``input``)."""
        size = self.size
        if self.model_input:
            if input_size is None:
                raise ProfilerError("resize 'input' needs a model with a fixed input size")
            size = input_size
        if size is not None:
            return None if tuple(size) == (width, height) else tuple(size)
        if self.scale is None or self.scale == 1.0:
            return None
        return (max(1, round(width * self.scale)), max(1, round(height * self.scale)))


@dataclass(frozen=True)
class CodecSpec:
    """``jpeg<q>`` (quality 1-100), ``png`` or ``raw`` (uncompressed BGR)."""

    label: str
    codec: str
    jpeg_quality: int | None = None


@dataclass(frozen=True)
class Transport:
    """One resize x codec pair: how the car sends the frame."""

    resize: ResizeSpec
    codec: CodecSpec

    @property
    def label(self) -> str:
        """The ``--options`` form, ``resize:codec``."""
        return f"{self.resize.label}:{self.codec.label}"


@dataclass(frozen=True)
class OptionSpec:
    """One cloud option to measure: a model and a transport (with the model's input size)."""

    model: str
    transport: Transport
    input_size: tuple[int, int] | None = None

    @property
    def id(self) -> str:
        return f"{self.model}-{self.transport.resize.label}-{self.transport.codec.label}"

    @property
    def resize(self) -> ResizeSpec:
        return self.transport.resize

    @property
    def codec(self) -> CodecSpec:
        return self.transport.codec

    def target(self, width: int, height: int) -> tuple[int, int] | None:
        return self.resize.target(width, height, self.input_size)


def _resize(item: str, raw: str) -> ResizeSpec | None:
    if item in ("native", "input"):
        return ResizeSpec(item, model_input=item == "input")
    if m := _RESIZE_SCALE.match(item):
        scale = float(m.group(1))
        if not 0 < scale <= 1:
            raise ProfilerError(f"--options item {raw!r}: a scale must be in (0, 1]")
        return ResizeSpec(f"x{scale:g}", scale=scale)
    if m := _RESIZE_SIZE.match(item):
        w, h = int(m.group(1)), int(m.group(2))
        if w < 1 or h < 1:
            raise ProfilerError(f"--options item {raw!r}: width and height must be >= 1")
        return ResizeSpec(f"{w}x{h}", size=(w, h))
    return None


def _codec(item: str, raw: str) -> CodecSpec | None:
    if m := _JPEG.match(item):
        q = int(m.group(1))
        if not 1 <= q <= 100:
            raise ProfilerError(f"--options item {raw!r}: JPEG quality must be 1-100")
        return CodecSpec(f"jpeg{q}", "jpeg", q)
    if item in ("png", "raw"):
        return CodecSpec(item, item)
    return None


_WHAT = "a resize target (native, input, x0.5, 960x640)", "a codec (jpeg75, png, raw)"


def _pair(raw: str) -> Transport:
    left, _, right = raw.strip().lower().partition(":")
    resize, codec = _resize(left.strip(), raw.strip()), _codec(right.strip(), raw.strip())
    if resize is None or codec is None:
        raise ProfilerError(f"--options item {raw.strip()!r}: a pair is RESIZE:CODEC, with RESIZE {_WHAT[0]} "
                            f"and CODEC {_WHAT[1]}")
    return Transport(resize, codec)


def _no_repeats(kind: str, labels: list[str]) -> None:
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ProfilerError(f"--options names the {kind} {dup[0]} twice")


def parse_options(text: str) -> tuple[Transport, ...]:
    """Parse ``--options`` (see the module doc) into the transports, in a fixed order."""
    resizes: list[ResizeSpec] = []
    codecs: list[CodecSpec] = []
    pairs: list[Transport] = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if ":" in item:
            pairs.append(_pair(raw))
        elif (r := _resize(item, raw.strip())) is not None:
            resizes.append(r)
        elif (c := _codec(item, raw.strip())) is not None:
            codecs.append(c)
        else:
            raise ProfilerError(f"--options item {raw.strip()!r} is neither {_WHAT[0]} nor {_WHAT[1]}, "
                                "nor a RESIZE:CODEC pair")
    if resizes and not codecs:
        raise ProfilerError(f"--options {text!r} names no codec (jpeg<quality>, png or raw) for its resize targets")
    if not codecs and not pairs:
        raise ProfilerError(f"--options {text!r} names no codec (jpeg<quality>, png or raw)")
    _no_repeats("resize target", [r.label for r in resizes])
    _no_repeats("codec", [c.label for c in codecs])
    crossed = [Transport(r, c) for r in resizes or [ResizeSpec("native")] for c in codecs]
    transports = crossed + pairs
    _no_repeats("option", [t.label for t in transports])
    return tuple(transports)


def format_options(transports: tuple[Transport, ...]) -> str:
    """The ``--options`` text that parses back to ``transports`` (crossed form where it is one)."""
    resizes = list(dict.fromkeys(t.resize.label for t in transports))
    codecs = list(dict.fromkeys(t.codec.label for t in transports))
    crossed = [f"{r}:{c}" for r in resizes for c in codecs]
    if [t.label for t in transports] == crossed:
        return ",".join(resizes + codecs)
    return ",".join(t.label for t in transports)
