"""Structured logs: one JSON object a line (or readable text), each naming an event and its fields.

``log_event(logger, "logon", account="bank", peer="127.0.0.1:50412")`` writes
``{"ts": "2026-11-28T10:00:00.123Z", "level": "INFO", "logger": "carbonx.gateway",
"event": "logon", "account": "bank", "peer": "127.0.0.1:50412"}``; a log shipper
or ``jq`` reads it without parsing prose.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

FIELDS = "carbonx_fields"  # the LogRecord attribute that carries an event's fields


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={FIELDS: fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, FIELDS, {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in getattr(record, FIELDS, {}).items())
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", style: str = "json", stream: TextIO | None = None) -> None:
    """Send the ``carbonx`` loggers to ``stream`` (stderr) as JSON lines or text."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if style == "json" else TextFormatter())
    root = logging.getLogger("carbonx")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
