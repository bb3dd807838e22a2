"""Optional dependencies: the default paths never import them; the code that does says which
extra brings them (``pip install 'carlink[EXTRA]'``), so a plain install fails with the fix, not
with a bare ModuleNotFoundError. pyproject.toml's [project.optional-dependencies] lists the extras.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra that brings it."""


def missing_extra(purpose: str, package: str, extra: str) -> MissingExtraError:
    """The error for ``purpose`` needing ``package``, which ``carlink[extra]`` installs."""
    return MissingExtraError(
        f"{purpose} needs the Python package {package!r}, which a plain install leaves out: "
        f"pip install 'carlink[{extra}]'",
        name=package,
    )


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :func:`missing_extra`'s error when its package is absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the package is there but something it imports is missing: show that
        raise missing_extra(purpose, exc.name, extra) from None
