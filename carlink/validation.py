"""The strict pydantic base of every carlink schema (daemon config, server settings, profile), and
one way to turn its validation errors into messages that name the key.

    try:
        Config.model_validate(document)
    except ValidationError as err:
        raise ConfigError("\\n".join(f"{path}: {p}" for p in problems(err, document))) from None

gives lines such as ``c.toml: daemon.devise: unknown key`` or, where list items carry a name,
``p.json: tasks[3] 'SIDE_LEFT'.options[1] 'q90'.payload_bytes_mean: Input should be ...``.
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Unknown keys are errors (a misspelt option silently ignored is worse than a refusal), and
    a validated instance is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# pydantic's wording for the two mistakes people make most, in the words of a config file.
_PLAIN_MESSAGES = {"extra_forbidden": "unknown key", "missing": "required key is missing"}
_VALUE_ERROR_PREFIX = "Value error, "  # pydantic's prefix for a ValueError raised by a validator


def key_path(loc: Sequence[Any], document: Any = None) -> str:
    """``tasks[1].deadline_ms`` from a pydantic error location. With the document that was
    validated, a list item that has a ``name`` or ``id`` shows it: ``tasks[1] 'FRONT'``."""
    path = ""
    node = document
    for key in loc:
        if isinstance(key, int):
            path += f"[{key}]"
            node = node[key] if isinstance(node, list) and -len(node) <= key < len(node) else None
            label = (node.get("name") or node.get("id")) if isinstance(node, dict) else None
            if isinstance(label, str) and label:
                path += f" {label!r}"
        else:
            path += f".{key}" if path else str(key)
            node = node.get(key) if isinstance(node, dict) else None
    return path


def problems(err: ValidationError, document: Any = None) -> list[str]:
    """One ``key.path: what is wrong`` per error (just what is wrong for the whole document)."""
    lines = []
    for e in err.errors():
        msg = _PLAIN_MESSAGES.get(e["type"], e["msg"])
        if msg.startswith(_VALUE_ERROR_PREFIX):
            msg = msg[len(_VALUE_ERROR_PREFIX):]
        path = key_path(e["loc"], document)
        lines.append(f"{path}: {msg}" if path else msg)
    return lines
