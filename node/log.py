"""Structured log lines on stderr: `ts=... level=info event=block_imported height=12 hash=ab12...`.

One line per event in logfmt, so people can read it and tools (grep, awk, Loki) can parse it. Values
with spaces, quotes or `=` are JSON-quoted; bytes are shown as short hex.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _value(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex()[:16]
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    if v is None:
        return "null"
    s = str(v)
    if not s or any(c in s for c in ' ="\n\t\\'):
        return json.dumps(s)
    return s


def format_event(level: str, event: str, fields: dict[str, Any], ts: float | None = None) -> str:
    t = time.time() if ts is None else ts
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
    parts = [f"ts={stamp}", f"level={level}", f"event={_value(event)}"]
    parts.extend(f"{k}={_value(v)}" for k, v in fields.items())
    return " ".join(parts)


class EventLog:
    """`log.info("block_imported", height=12)`; lines below the configured level are not written."""

    def __init__(self, level: str = "info", stream: Any = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
        self.threshold = LEVELS[level]
        self.stream = stream if stream is not None else sys.stderr

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if LEVELS[level] < self.threshold:
            return
        try:
            self.stream.write(format_event(level, event, fields) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed: logging must never take the node down

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold


class _Bridge(logging.Handler):
    """Sends library log records (aiohttp, asyncio) through the event log, one line each."""

    def __init__(self, log: EventLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning" if record.levelno >= logging.WARNING \
            else "info" if record.levelno >= logging.INFO else "debug"
        fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
        if record.exc_info and record.exc_info[1] is not None:
            fields["exception"] = repr(record.exc_info[1])
        self.log._emit(level, "library", fields)


def bridge_stdlib_logging(log: EventLog) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_Bridge(log)]
    root.setLevel(logging.WARNING)  # aiohttp's access log and chatter stay off
