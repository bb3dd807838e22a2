"""Errors of the zoo that callers (cloud server, onboard daemon, CLI) turn into start-up refusals.

ZooError is a ValueError, so code that already refuses to start on a ValueError from the zoo
(the daemon, the server) refuses on these too, with the message as written here.
"""

from __future__ import annotations

from pathlib import Path


class ZooError(ValueError):
    """A model cannot be built: bad model files, a missing models folder, an impossible setting."""


class ModelFileError(ZooError):
    """A model file is unusable. Names the file, where in it (layer index, line) and what was expected."""

    def __init__(self, path: str | Path, problem: str, *, layer: int | None = None) -> None:
        self.path = Path(path)
        self.layer = layer
        self.problem = problem
        where = f" layer {layer}" if layer is not None else ""
        super().__init__(f"{self.path}:{where} {problem}" if where else f"{self.path}: {problem}")


class ModelFilesMissingError(ZooError):
    """A model's files are not in the models directory. Says where it looked and how to get them."""

    def __init__(self, model: str, missing: list[Path], models_dir: Path, network: str) -> None:
        self.model = model
        self.missing = list(missing)
        self.models_dir = models_dir
        files = ", ".join(str(p) for p in self.missing)
        super().__init__(
            f"model {model!r}: missing {files} (models directory {models_dir}); run "
            f"`carlink models fetch {network}` where a network exists, copy the files there, or point "
            "CARLINK_MODELS_DIR (or --models-dir) at a folder that has them"
        )


class ModelsDirError(ZooError):
    """The models directory exists but cannot be used (not a folder, not readable)."""


class BackendError(ZooError):
    """A backend that the model's family does not have, or one that cannot run here."""
