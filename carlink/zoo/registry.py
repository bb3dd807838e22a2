"""The zoo's catalogue: model names -> specs and factories.

Built in: the Darknet family (three COCO-trained YOLO networks at five input sizes, OpenCV or
PyTorch backend, files from the models directory; the default), OpenCV's HOG pedestrian
detectors (pretrained, offline), four torchvision COCO detectors (weights from a file or the
torch hub cache) and "noop". Tests, benchmarks and users add their own with `register_model`.
"""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path
from typing import Callable, Protocol

from carlink.zoo.base import Detector, ModelSpec
from carlink.zoo.darknet import VARIANTS as DARKNET_VARIANTS
from carlink.zoo.darknet import DarknetVariant, darknet_spec, load_darknet_detector
from carlink.zoo.errors import BackendError, ZooError
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
    "BackendError",
    "DEFAULT_MODEL",
    "FAMILY_BACKENDS",
    "ModelFactory",
    "UnknownModelError",
    "WeightsNotFoundError",
    "ZooError",
    "check_model_files",
    "get_model",
    "get_spec",
    "list_specs",
    "register_model",
    "unregister_model",
]

DEFAULT_MODEL = "yolo-fastest-1.1-320x320"  # the car's default: the smallest Darknet variant, OpenCV

# The backends each built-in family has; get_model's backend "auto" is always accepted.
FAMILY_BACKENDS: dict[str, tuple[str, ...]] = {
    "darknet": ("opencv", "torch"),
    "hog": ("opencv",),
    "torchvision": ("torch",),
}


class ModelFactory(Protocol):
    """Builds a detector. Called with keywords: weights, allow_untrained, device; and, where the
    factory's signature takes them, backend, models_dir and model options (score_threshold ...)."""

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
    backend: str = "auto",
    models_dir: str | os.PathLike[str] | None = None,
    **options: object,
) -> Detector:
    """Build a ready-to-run detector. Never downloads.

    `backend`: "auto", or one the model's family has (darknet: "opencv", "torch"; hog: "opencv";
    torchvision: "torch"). `models_dir`: where the Darknet family's files are (else
    CARLINK_MODELS_DIR, else the per-user cache). `options`: model settings its factory takes
    (darknet: score_threshold, nms_iou). Raises UnknownModelError for a name not registered,
    WeightsNotFoundError / ZooError subclasses for missing or bad model files, BackendError for
    a backend the model does not have.
    """
    with _lock:
        entry = _registry.get(name)
        known = list(_registry)
    if entry is None:
        raise UnknownModelError(name, known)
    spec, factory = entry
    kwargs: dict[str, object] = dict(weights=weights, allow_untrained=allow_untrained, device=device)
    accepted = _accepted_keywords(factory)
    b = (backend or "auto").strip().lower()
    if "backend" in accepted:
        kwargs["backend"] = b
    elif b != "auto" and b not in FAMILY_BACKENDS.get(spec.family, ()):
        own = ", ".join(FAMILY_BACKENDS.get(spec.family, ())) or "its own only"
        raise BackendError(f"model {name} ({spec.family}) has no backend {backend!r}; it runs on: {own} (or 'auto')")
    if models_dir is not None and "models_dir" in accepted:
        kwargs["models_dir"] = models_dir
    for key, value in options.items():
        if key not in accepted:
            raise TypeError(f"model {name} ({spec.family}) takes no option {key!r}")
        kwargs[key] = value
    return factory(**kwargs)


def _accepted_keywords(factory: Callable[..., Detector]) -> set[str] | _AnyKeyword:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return _AnyKeyword()
    return {p.name for p in params}


class _AnyKeyword(set):
    """A factory with **kwargs takes every keyword."""

    def __contains__(self, item: object) -> bool:
        return True


def check_model_files(name: str, *, models_dir: str | os.PathLike[str] | None = None,
                      weights: str | Path | None = None) -> None:
    """Check a model's files without building it (for `onboard check-config`): a ZooError where
    they are missing or do not match; nothing for families with built-in or hub weights."""
    spec = get_spec(name)
    variant = DARKNET_VARIANTS.get(name)
    if spec.family == "darknet" and variant is not None:
        from carlink.zoo.darknet import load_network_files

        load_network_files(variant.network, model=name, models_dir=models_dir, weights=weights)


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


def _darknet_factory(variant: DarknetVariant) -> Callable[..., Detector]:
    def make(*, weights: str | Path | None = None, allow_untrained: bool = False, device: str = "auto",
             backend: str = "auto", models_dir: str | os.PathLike[str] | None = None,
             score_threshold: float | None = None, nms_iou: float | None = None) -> Detector:
        # allow_untrained does not apply: these networks are only served with their real weights.
        settings = {k: v for k, v in (("score_threshold", score_threshold), ("nms_iou", nms_iou)) if v is not None}
        return load_darknet_detector(variant, backend=backend, device=device, models_dir=models_dir,
                                     weights=weights, **settings)  # type: ignore[arg-type]

    return make


def _register_builtins() -> None:
    for variant in DARKNET_VARIANTS.values():
        register_model(darknet_spec(variant), _darknet_factory(variant))
    for name, params in HOG_VARIANTS.items():
        register_model(hog_spec(name, params), _hog_factory(name))
    for info in TORCHVISION_MODELS.values():
        register_model(torchvision_spec(info), _torchvision_factory(info))
    register_model(NOOP_SPEC, _noop_factory)


_register_builtins()
