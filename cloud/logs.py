"""Structured logs: one JSON object per line, so log shippers need no parsing rules."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "event": ..., <fields>}``.

    Fields come from ``extra={"fields": {...}}`` (see ``event``).
    """

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        obj.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str, separators=(",", ":"))


def configure_json_logging(level: int = logging.INFO, stream: TextIO | None = None,
                           logger_name: str = "carlink.cloud") -> None:
    """Send ``logger_name``'s records to ``stream`` (stderr) as JSON lines, and only there."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log one structured event, skipping the formatting work when the level is off."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
