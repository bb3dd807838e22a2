"""The zoo's catalogue: model names -> specs and factories.

Built in: OpenCV's HOG pedestrian detectors (pretrained, offline; the defaults here), four
torchvision COCO detectors (weights from a file or the torch hub cache) and "noop". Tests,
benchmarks and users add their own with `register_model`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Protocol

from carlink.zoo.base import Detector, ModelSpec
from carlink.zoo.hog import HOG_VARIANTS, HogDetector, hog_spec
from carlink.zoo.noop import NOOP_SPEC, NoopDetector
from carlink.zoo.torchvision_models import (
    TORCHVISION_MODELS,
    TorchvisionModelInfo,
    load_torchvision_detector,
    torchvision_spec,
)
from carlink.zoo.weights import WeightsNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "ModelFactory",
    "UnknownModelError",
    "WeightsNotFoundError",
    "get_model",
    "get_spec",
    "list_specs",
    "register_model",
    "unregister_model",
]

DEFAULT_MODEL = "hog-default"


class ModelFactory(Protocol):
    """Builds a detector. Called with keywords: weights, allow_untrained, device."""

    def __call__(
        self, *, weights: str | Path | None, allow_untrained: bool, device: str
    ) -> Detector: ...


class UnknownModelError(KeyError, ValueError):
    """A model name the zoo does not know. The message lists the names it knows."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown model {name!r}; known models: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would print the message inside quotes
        return self.args[0]


_lock = threading.Lock()
_registry: dict[str, tuple[ModelSpec, ModelFactory]] = {}


def register_model(spec: ModelSpec, factory: ModelFactory | Callable[..., Detector], *, replace: bool = False) -> None:
    """Add a model. A name already taken is an error unless `replace` is set."""
    if not spec.name or spec.name != spec.name.strip() or any(c.isspace() for c in spec.name):
        raise ValueError(f"model name {spec.name!r} must be non-empty and without whitespace")
    with _lock:
        if spec.name in _registry and not replace:
            raise ValueError(f"model {spec.name!r} is already registered (pass replace=True to override)")
        _registry[spec.name] = (spec, factory)


def unregister_model(name: str) -> None:
    """Remove a model (tests use it to clean up their stand-ins)."""
    with _lock:
        if name not in _registry:
            raise UnknownModelError(name, sorted(_registry))
        del _registry[name]


def list_specs() -> list[ModelSpec]:
    """Every registered model, built-ins first in a stable order, then custom ones by name."""
    with _lock:
        return [spec for spec, _ in _registry.values()]


def get_spec(name: str) -> ModelSpec:
    with _lock:
        entry = _registry.get(name)
        known = list(_registry)
    if entry is None:
        raise UnknownModelError(name, known)
    return entry[0]


def get_model(
    name: str,
    *,
    weights: str | Path | None = None,
    allow_untrained: bool = False,
    device: str = "auto",
) -> Detector:
    """Build a ready-to-run detector. Never downloads.

    Raises UnknownModelError for a name not registered, WeightsNotFoundError when a model needs
    weights that are neither at `weights` nor in the torch hub cache (unless `allow_untrained`).
    """
    with _lock:
        entry = _registry.get(name)
        known = list(_registry)
    if entry is None:
        raise UnknownModelError(name, known)
    _, factory = entry
    return factory(weights=weights, allow_untrained=allow_untrained, device=device)


def _builtin_weights_only(name: str, weights: str | Path | None, device: str) -> None:
    if weights is not None:
        raise ValueError(f"model {name} has built-in weights; a weights file cannot be given")
    if device.strip().lower() not in ("auto", "cpu"):
        raise ValueError(f"model {name} runs on the CPU only (OpenCV); device {device!r} is not possible")


def _hog_factory(name: str) -> ModelFactory:
    spec, params = hog_spec(name, HOG_VARIANTS[name]), HOG_VARIANTS[name]

    def make(*, weights: str | Path | None = None, allow_untrained: bool = False, device: str = "auto") -> Detector:
        _builtin_weights_only(name, weights, device)
        return HogDetector(spec, params)

    return make


def _noop_factory(*, weights: str | Path | None = None, allow_untrained: bool = False, device: str = "auto") -> Detector:
    _builtin_weights_only("noop", weights, device)
    return NoopDetector()


def _torchvision_factory(info: TorchvisionModelInfo) -> ModelFactory:
    def make(*, weights: str | Path | None = None, allow_untrained: bool = False, device: str = "auto") -> Detector:
        return load_torchvision_detector(info, weights=weights, allow_untrained=allow_untrained, device=device)

    return make


def _register_builtins() -> None:
    for name, params in HOG_VARIANTS.items():
        register_model(hog_spec(name, params), _hog_factory(name))
    for info in TORCHVISION_MODELS.values():
        register_model(torchvision_spec(info), _torchvision_factory(info))
    register_model(NOOP_SPEC, _noop_factory)


_register_builtins()
