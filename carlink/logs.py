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


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is emitted, not as it was when logging was
    configured: a stderr replaced and closed since (a test's capture, a daemonizing wrapper) gets
    no writes (as the standard library's last-resort handler does)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr


def configure_text_logging(level: int) -> None:
    """The commands' default: text lines on stderr from the root logger (a no-op where the root
    logger already has handlers, as :func:`logging.basicConfig`)."""
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def configure_json_logging(logger_name: str = "", level: int | None = None, stream: TextIO | None = None) -> None:
    """Send ``logger_name``'s records (the root logger's by default) to ``stream`` (stderr) as
    JSON lines, and only there; ``level`` None keeps the logger's level."""
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
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
