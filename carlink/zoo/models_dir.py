"""Where model files live: one folder per network, as in ../shared/data/models.

The models directory is, first match wins: an explicit setting (get_model's `models_dir`,
`--models-dir`), the environment variable CARLINK_MODELS_DIR, the per-user cache
($XDG_CACHE_HOME or ~/.cache)/carlink/models. Nothing is ever downloaded into it implicitly;
`carlink models fetch` does that on request.
"""

from __future__ import annotations

import os
from pathlib import Path

from carlink.zoo.errors import ModelsDirError

MODELS_DIR_ENV = "CARLINK_MODELS_DIR"


def user_cache_models_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "carlink" / "models"


def resolve_models_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The models directory to use (it need not exist yet: then every model is missing)."""
    if explicit is not None and str(explicit).strip():
        return Path(explicit).expanduser()
    env = os.environ.get(MODELS_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return user_cache_models_dir()


def models_dir_source(explicit: str | os.PathLike[str] | None = None) -> str:
    """Which rule chose the models directory, for `carlink models list`."""
    if explicit is not None and str(explicit).strip():
        return "setting"
    if os.environ.get(MODELS_DIR_ENV, "").strip():
        return MODELS_DIR_ENV
    return "user cache"


def check_models_dir(path: Path) -> None:
    """Refuse a models directory that exists but cannot be used; a missing one is fine here."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ModelsDirError(f"models directory {path}: not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelsDirError(f"models directory {path}: not readable (permissions)")


def network_dir(models_dir: Path, network: str) -> Path:
    folder = models_dir / network
    if folder.exists() and (not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK)):
        raise ModelsDirError(f"model folder {folder}: not a readable directory")
    return folder
