"""Structured logs: one JSON object per line, and nothing secret or identifying in them.

The relay logs events with fixed messages and low-cardinality fields; a token, a key, a file
name or any request body is never passed to a logger. As a second line of defence the formatter
redacts anything that looks like a bearer token or a JWT.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

_SECRETS = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)
_FIELDS = ("route", "method", "status", "ms", "code", "count", "seq_count", "bytes", "error")


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for name in _FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = record.exc_info[0].__name__
        return json.dumps(out, separators=(",", ":"))


def configure(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("relay")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # aiohttp's access log would print request lines: ours is the relay.http logger instead.
    logging.getLogger("aiohttp.access").disabled = True
