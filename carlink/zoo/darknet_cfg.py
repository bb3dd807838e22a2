"""Darknet network files: the .cfg parser and the .weights reader, checked against each other.

A .cfg is INI-like: a [net] section, then one section per layer, numbered from 0 in file order
(the numbers [route] and [shortcut] refer to). A .weights file is a header (major, minor,
revision as int32; images seen as int64 from version 0.2 on, else int32) followed by every
[convolutional] layer's float32 parameters in cfg order: biases, then (with batch_normalize)
scales, rolling mean, rolling variance, then the kernel (filters x channels/groups x size x size).
Nothing else in these three networks has parameters, so the file's size is fixed by the cfg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from carlink.zoo.errors import ModelFileError

ACTIVATIONS = ("leaky", "linear", "relu", "logistic")
LAYER_TYPES = ("convolutional", "route", "shortcut", "upsample", "maxpool", "dropout", "yolo")
_ALIASES = {"conv": "convolutional", "max": "maxpool", "net": "net", "network": "net"}
# Keys whose non-default values change what a layer computes and that this reader does not build:
# refusing them beats silently computing something else.
_UNSUPPORTED = {
    "convolutional": {"dilation": "1", "binary": "0", "xnor": "0", "antialiasing": "0",
                      "deform": "0", "share_index": None, "stride_x": None, "stride_y": None},
    "maxpool": {"maxpool_depth": "0", "antialiasing": "0", "stride_x": None, "stride_y": None},
    "shortcut": {"weights_type": "none"},
    "yolo": {"new_coords": "0"},
    "route": {},
    "upsample": {"reverse": "0"},
    "dropout": {},
}


@dataclass(frozen=True)
class ConvLayer:
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str


@dataclass(frozen=True)
class RouteLayer:
    layers: tuple[int, ...]  # absolute layer indices
    groups: int = 1
    group_id: int = 0


@dataclass(frozen=True)
class ShortcutLayer:
    source: int  # absolute index of the layer added to the previous one
    activation: str = "linear"


@dataclass(frozen=True)
class UpsampleLayer:
    stride: int


@dataclass(frozen=True)
class MaxpoolLayer:
    size: int
    stride: int
    padding: int  # total; darknet puts padding // 2 before and the rest after


@dataclass(frozen=True)
class DropoutLayer:
    probability: float  # training only: the identity at inference


@dataclass(frozen=True)
class YoloLayer:
    anchors: tuple[tuple[float, float], ...]  # (w, h) in network-input pixels, this layer's mask only
    classes: int
    scale_x_y: float = 1.0


Layer = Union[ConvLayer, RouteLayer, ShortcutLayer, UpsampleLayer, MaxpoolLayer, DropoutLayer, YoloLayer]


@dataclass(frozen=True)
class DarknetCfg:
    path: Path
    width: int  # the input size written in [net]; the zoo's variants override it
    height: int
    channels: int
    layers: tuple[Layer, ...]
    out_channels: tuple[int, ...]  # per layer
    param_counts: tuple[int, ...]  # per layer: float32 values it reads from .weights
    lines: tuple[int, ...] = field(default=())  # per layer: line of its [section] header

    @property
    def parameter_count(self) -> int:
        return sum(self.param_counts)

    @property
    def yolo_indices(self) -> tuple[int, ...]:
        return tuple(i for i, l in enumerate(self.layers) if isinstance(l, YoloLayer))


@dataclass
class _Section:
    kind: str
    line: int
    options: dict[str, tuple[str, int]]  # key -> (value, line)


def _sections(path: Path, text: str) -> list[_Section]:
    sections: list[_Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ModelFileError(path, f"line {number}: malformed section header {raw.strip()!r}")
            kind = line[1:-1].strip().lower()
            sections.append(_Section(_ALIASES.get(kind, kind), number, {}))
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise ModelFileError(path, f"line {number}: expected key=value or [section], got {raw.strip()!r}")
        if not sections:
            raise ModelFileError(path, f"line {number}: option {key.strip()!r} before the first [section]")
        sections[-1].options[key.strip().lower()] = (value.strip(), number)
    return sections


class _Options:
    """Typed reads of one section's options, each error naming the file, layer and line."""

    def __init__(self, path: Path, section: _Section, layer: int | None) -> None:
        self.path, self.section, self.layer = path, section, layer

    def _fail(self, key: str, expected: str) -> ModelFileError:
        value, line = self.section.options.get(key, ("<missing>", self.section.line))
        return ModelFileError(self.path, f"[{self.section.kind}] at line {line}: {key}={value}: expected {expected}",
                              layer=self.layer)

    def has(self, key: str) -> bool:
        return key in self.section.options

    def int(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        if key not in self.section.options:
            if default is None:
                raise self._fail(key, "an integer (required)")
            return default
        try:
            value = int(self.section.options[key][0])
        except ValueError:
            raise self._fail(key, "an integer") from None
        if minimum is not None and value < minimum:
            raise self._fail(key, f"an integer >= {minimum}")
        return value

    def float(self, key: str, default: float) -> float:
        if key not in self.section.options:
            return default
        try:
            return float(self.section.options[key][0])
        except ValueError:
            raise self._fail(key, "a number") from None

    def ints(self, key: str) -> list[int]:
        if key not in self.section.options:
            raise self._fail(key, "a comma-separated list of integers (required)")
        try:
            return [int(v) for v in self.section.options[key][0].split(",") if v.strip()]
        except ValueError:
            raise self._fail(key, "a comma-separated list of integers") from None

    def floats(self, key: str) -> list[float]:
        if key not in self.section.options:
            raise self._fail(key, "a comma-separated list of numbers (required)")
        try:
            return [float(v) for v in self.section.options[key][0].split(",") if v.strip()]
        except ValueError:
            raise self._fail(key, "a comma-separated list of numbers") from None

    def activation(self) -> str:
        value = self.section.options.get("activation", ("linear", 0))[0].lower()
        if value not in ACTIVATIONS:
            raise self._fail("activation", f"one of {', '.join(ACTIVATIONS)}")
        return value

    def refuse_unsupported(self) -> None:
        for key, default in _UNSUPPORTED.get(self.section.kind, {}).items():
            if key in self.section.options and (default is None or self.section.options[key][0] != default):
                raise self._fail(key, f"{'no ' + key if default is None else key + '=' + default} (not supported)")


def _absolute(path: Path, index: int, ref: int, what: str, opts: _Options) -> int:
    target = index + ref if ref < 0 else ref
    if not 0 <= target < index:
        raise ModelFileError(path, f"{what} refers to layer {ref} (= {target}): expected an earlier layer, 0..{index - 1}",
                             layer=index)
    return target


def _build_layer(path: Path, index: int, section: _Section) -> Layer:
    opts = _Options(path, section, index)
    opts.refuse_unsupported()
    kind = section.kind
    if kind == "convolutional":
        size = opts.int("size", 1, minimum=1)
        pad = opts.int("pad", 0)
        return ConvLayer(
            filters=opts.int("filters", 1, minimum=1), size=size, stride=opts.int("stride", 1, minimum=1),
            padding=size // 2 if pad else opts.int("padding", 0, minimum=0),
            groups=opts.int("groups", 1, minimum=1), batch_normalize=bool(opts.int("batch_normalize", 0)),
            activation=opts.activation(),
        )
    if kind == "route":
        layers = tuple(_absolute(path, index, r, "route layers", opts) for r in opts.ints("layers"))
        if not layers:
            raise opts._fail("layers", "at least one layer")
        groups = opts.int("groups", 1, minimum=1)
        group_id = opts.int("group_id", 0, minimum=0)
        if group_id >= groups:
            raise opts._fail("group_id", f"an integer below groups={groups}")
        return RouteLayer(layers, groups, group_id)
    if kind == "shortcut":
        sources = opts.ints("from")
        if len(sources) != 1:
            raise opts._fail("from", "exactly one layer")
        activation = opts.activation()
        return ShortcutLayer(_absolute(path, index, sources[0], "shortcut from", opts), activation)
    if kind == "upsample":
        return UpsampleLayer(opts.int("stride", 2, minimum=1))
    if kind == "maxpool":
        size = opts.int("size", 1, minimum=1)
        stride = opts.int("stride", 1, minimum=1)
        return MaxpoolLayer(size, stride, opts.int("padding", size - 1, minimum=0))
    if kind == "dropout":
        return DropoutLayer(opts.float("probability", 0.5))
    if kind == "yolo":
        anchors_flat = opts.floats("anchors")
        if len(anchors_flat) % 2:
            raise opts._fail("anchors", "an even number of values (w,h pairs)")
        pairs = [(anchors_flat[i], anchors_flat[i + 1]) for i in range(0, len(anchors_flat), 2)]
        mask = opts.ints("mask") if opts.has("mask") else list(range(len(pairs)))
        if any(not 0 <= m < len(pairs) for m in mask):
            raise opts._fail("mask", f"indices into the {len(pairs)} anchors")
        return YoloLayer(tuple(pairs[m] for m in mask), opts.int("classes", 20, minimum=1),
                         opts.float("scale_x_y", 1.0))
    raise ModelFileError(path, f"unknown layer type [{kind}] at line {section.line}: expected one of "
                         f"{', '.join('[' + t + ']' for t in LAYER_TYPES)}", layer=index)


def _channels(path: Path, index: int, layer: Layer, out: list[int], in_channels: int) -> tuple[int, int]:
    """(output channels, parameter count) of one layer given the ones before it."""
    prev = out[index - 1] if index else in_channels
    if isinstance(layer, ConvLayer):
        if prev % layer.groups or layer.filters % layer.groups:
            raise ModelFileError(path, f"[convolutional] groups={layer.groups}: expected a divisor of its "
                                 f"{prev} input channels and {layer.filters} filters", layer=index)
        n = layer.filters
        params = n + (3 * n if layer.batch_normalize else 0) + n * (prev // layer.groups) * layer.size ** 2
        return n, params
    if isinstance(layer, RouteLayer):
        total = sum(out[i] for i in layer.layers)
        if total % layer.groups:
            raise ModelFileError(path, f"[route] groups={layer.groups}: expected a divisor of its {total} channels",
                                 layer=index)
        return total // layer.groups, 0
    if isinstance(layer, ShortcutLayer):
        if out[layer.source] != prev:
            raise ModelFileError(path, f"[shortcut] adds layer {layer.source} ({out[layer.source]} channels) to "
                                 f"layer {index - 1} ({prev} channels): expected equal channel counts", layer=index)
        return prev, 0
    if isinstance(layer, YoloLayer):
        want = len(layer.anchors) * (layer.classes + 5)
        if prev != want:
            raise ModelFileError(path, f"[yolo] input has {prev} channels: expected {want} "
                                 f"({len(layer.anchors)} anchors x ({layer.classes} classes + 5))", layer=index)
        return prev, 0
    return prev, 0


def parse_cfg(path: str | Path) -> DarknetCfg:
    """Read and check a .cfg: every layer known, references valid, channel counts consistent."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(path, f"cannot read: {exc}") from None
    sections = _sections(path, text)
    if not sections or sections[0].kind != "net":
        raise ModelFileError(path, "expected a [net] section first")
    net = _Options(path, sections[0], None)
    layers: list[Layer] = []
    out: list[int] = []
    params: list[int] = []
    channels = net.int("channels", 3, minimum=1)
    for index, section in enumerate(sections[1:]):
        if section.kind == "net":
            raise ModelFileError(path, f"second [net] section at line {section.line}", layer=index)
        layer = _build_layer(path, index, section)
        c, p = _channels(path, index, layer, out, channels)
        layers.append(layer)
        out.append(c)
        params.append(p)
    if not any(isinstance(l, YoloLayer) for l in layers):
        raise ModelFileError(path, "no [yolo] layer: expected a YOLO detection network")
    return DarknetCfg(path, net.int("width", 416, minimum=1), net.int("height", 416, minimum=1), channels,
                      tuple(layers), tuple(out), tuple(params), tuple(s.line for s in sections[1:]))


@dataclass(frozen=True)
class ConvParams:
    """One [convolutional] layer's parameters as stored in .weights."""

    bias: np.ndarray  # (filters,)
    kernel: np.ndarray  # (filters, channels/groups, size, size)
    bn_scale: np.ndarray | None = None  # with batch_normalize: scales, rolling mean, rolling variance
    bn_mean: np.ndarray | None = None
    bn_var: np.ndarray | None = None


@dataclass(frozen=True)
class DarknetWeights:
    path: Path
    version: tuple[int, int, int]
    seen: int
    convs: dict[int, ConvParams]  # layer index -> parameters


def _header_size(raw: bytes) -> int:
    major, minor, _ = np.frombuffer(raw[:12], dtype="<i4")
    return 20 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 16


def read_weights(path: str | Path, cfg: DarknetCfg) -> DarknetWeights:
    """Read a .weights file for `cfg`; its size must be exactly header + 4 x the cfg's parameters."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(path, "no such file") from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) < 16:
        raise ModelFileError(path, f"{len(raw)} bytes: expected a Darknet weights header (16 or 20 bytes) and parameters")
    header = _header_size(raw)
    expected = header + 4 * cfg.parameter_count
    if len(raw) != expected:
        raise ModelFileError(path, _size_problem(cfg, len(raw), header), layer=_short_layer(cfg, len(raw), header))
    version = tuple(int(v) for v in np.frombuffer(raw[:12], dtype="<i4"))
    seen = int(np.frombuffer(raw[12:header], dtype="<i8" if header == 20 else "<i4")[0])
    values = np.frombuffer(raw, dtype="<f4", offset=header)
    convs: dict[int, ConvParams] = {}
    offset = 0
    prev_channels = cfg.channels
    for index, (layer, count) in enumerate(zip(cfg.layers, cfg.param_counts)):
        if isinstance(layer, ConvLayer):
            chunk = values[offset:offset + count]
            if not np.isfinite(chunk).all():
                raise ModelFileError(path, f"[convolutional] parameters at float {offset}: expected finite numbers, "
                                     "found NaN or infinity", layer=index)
            convs[index] = _split_conv(layer, chunk, prev_channels)
            offset += count
        prev_channels = cfg.out_channels[index]
    return DarknetWeights(path, version, seen, convs)  # type: ignore[arg-type]


def _split_conv(layer: ConvLayer, chunk: np.ndarray, in_channels: int) -> ConvParams:
    n = layer.filters
    parts = [n] * (4 if layer.batch_normalize else 1)
    arrays, at = [], 0
    for size in parts:
        arrays.append(chunk[at:at + size].astype(np.float32))
        at += size
    kernel = chunk[at:].astype(np.float32).reshape(n, in_channels // layer.groups, layer.size, layer.size)
    if layer.batch_normalize:
        return ConvParams(arrays[0], kernel, arrays[1], arrays[2], arrays[3])
    return ConvParams(arrays[0], kernel)


def _short_layer(cfg: DarknetCfg, size: int, header: int) -> int | None:
    """The layer whose parameters the file ends inside (None when the file is too long)."""
    available = (size - header) // 4
    at = 0
    for index, count in enumerate(cfg.param_counts):
        at += count
        if count and at > available:
            return index
    return None


def _size_problem(cfg: DarknetCfg, size: int, header: int) -> str:
    expected = header + 4 * cfg.parameter_count
    base = (f"{size} bytes: expected {expected} (header {header} + 4 x {cfg.parameter_count} parameters "
            f"of {cfg.path.name})")
    layer = _short_layer(cfg, size, header)
    if layer is not None:
        before = sum(cfg.param_counts[:layer])
        return (f"{base}; the file ends inside this [convolutional] layer, which needs floats "
                f"{before}..{before + cfg.param_counts[layer]} (truncated, or weights of another network)")
    last = max(i for i, c in enumerate(cfg.param_counts) if c)
    extra = size - expected
    return f"{base}; {extra} bytes left after the last parameterised layer {last} (weights of another network?)"
