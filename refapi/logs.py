"""JSON log lines on stdout: one formatter, a request-id context, redaction, and a cheap access-line path."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import select
import sys
import time
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Userinfo in URLs (amqp://user:pass@host, redis://:pass@host) is the usual way credentials sneak into messages.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*@")
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def utc_timestamp(epoch: float, digits: int = 3) -> str:
    """RFC 3339 UTC with `digits` fractional digits and a Z, e.g. 2026-12-04T19:24:36.186Z."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[: 20 + digits] + "Z"


class _SecondCache:
    """The access line's timestamp: formatting a datetime per request is costly, the second changes rarely."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch: float) -> str:
        second = int(epoch)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((epoch - second) * 1000):03d}Z"


def _stdout_fd() -> int:
    try:
        return sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return 1


class JsonFormatter(logging.Formatter):
    """timestamp, level, logger, message, request_id, then any `extra` fields; credentials in URLs redacted."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "timestamp": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in fields:
                fields[key] = value
        if record.exc_info:
            fields["exception"] = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return orjson.dumps(fields, default=str).decode()


class JsonLineHandler(logging.Handler):
    """Writes each record with one os.write: below PIPE_BUF that is atomic, so lines from several workers never
    interleave, and nothing waits in a buffer if the worker dies."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(_stdout_fd(), self.format(record).encode() + b"\n")
        except Exception:  # logging must never take the service down
            self.handleError(record)


def configure(level: str) -> None:
    """Route every logger (refapi, aiohttp, gunicorn) through one JSON handler on the root, exactly once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(JsonLineHandler())
    root.setLevel(level)
    # aiohttp's own access log is replaced by refapi.access; gunicorn's is disabled in its config.
    logging.getLogger("aiohttp.access").disabled = True
    for name in ("gunicorn.error", "gunicorn.access"):
        gunicorn_logger = logging.getLogger(name)
        gunicorn_logger.handlers.clear()
        gunicorn_logger.propagate = True


class AccessLog:
    """The per-request line, built as a dict and written directly: no LogRecord machinery on the hot path.

    Lines produced in one event-loop turn leave in as few writes as possible, each at most PIPE_BUF bytes of
    whole lines, so they stay atomic with respect to other workers sharing the same stdout pipe. Under load
    that is one system call for many requests instead of one each.
    """

    logger_name = "refapi.access"

    def __init__(self) -> None:
        self._logger = logging.getLogger(self.logger_name)
        self._timestamp = _SecondCache()
        self._pending: list[bytes] = []

    def write(
        self, *, request_id: str, method: str, route: str, path: str, status: int, duration: float, client_ip: str
    ) -> None:
        level = logging.ERROR if status >= 500 else logging.INFO
        if not self._logger.isEnabledFor(level):
            return
        line = orjson.dumps(
            {
                "timestamp": self._timestamp(time.time()),
                "level": "ERROR" if level == logging.ERROR else "INFO",
                "logger": self.logger_name,
                "message": "request completed",
                "request_id": request_id,
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
                "client_ip": client_ip,
            }
        )
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(line + b"\n")

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        fd, chunk = _stdout_fd(), b""
        for line in lines:
            if chunk and len(chunk) + len(line) > select.PIPE_BUF:
                os.write(fd, chunk)
                chunk = b""
            chunk += line
        if chunk:
            os.write(fd, chunk)
