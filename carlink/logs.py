"""Structured logs for the car and the cloud: one JSON object per line, so log shippers (journald,
a fleet's collector) need no parsing rules.

    {"ts": 1733250000.123456, "level": "info", "logger": "carlink.cloud", "event": "serving", ...}

Fields come from ``extra={"fields": {...}}`` (see :func:`event`) and from ``key=value`` words of
the message (the daemon's printf-style lines, e.g. ``"stopped frames=%d emitted=%d"``).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: ts, level, logger, event, then its fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        obj: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": message,
        }
        for word in message.split():
            key, eq, value = word.partition("=")
            if eq and key.isidentifier() and key not in obj:
                obj[key] = value
        obj.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str, separators=(",", ":"))


def configure_json_logging(logger_name: str = "", level: int | None = None, stream: TextIO | None = None) -> None:
    """Send ``logger_name``'s records (the root logger's by default) to ``stream`` (stderr) as
    JSON lines, and only there; ``level`` None keeps the logger's level."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.handlers[:] = [handler]
    if level is not None:
        logger.setLevel(level)
    if logger_name:
        logger.propagate = False  # its lines must not appear twice (the root's handlers too)


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log one structured event, skipping the formatting work when the level is off."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
