"""Writing the small TOML documents driftsync keeps (reading is :mod:`tomllib`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string is a JSON string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key) and key.isascii()
    return key if bare else json.dumps(key)


def dumps(doc: Mapping[str, Any]) -> str:
    lines: list[str] = []
    tables: list[tuple[list[str], Mapping[str, Any]]] = []

    def emit(prefix: list[str], table: Mapping[str, Any]) -> None:
        for key, value in table.items():
            if isinstance(value, Mapping):
                tables.append(([*prefix, key], value))
            elif value is not None:
                lines.append(f"{_key(key)} = {_value(value)}")

    emit([], doc)
    while tables:
        path, table = tables.pop(0)
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
        emit(path, table)
    return "\n".join(lines).lstrip("\n") + "\n"


def write_atomic(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace ``path`` durably (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
