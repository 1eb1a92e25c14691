"""Request and response bodies: canonical msgpack maps, read with typed field accessors.

Every API body is a msgpack map (``application/msgpack``) except single blocks, which travel as
raw bytes. A missing or mistyped field is a :class:`BadRequest` naming the field.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from protocol.codec import pack, unpack
from protocol.errors import DecodeError
from relay.errors import BadRequest, RelayError

CONTENT_TYPE = "application/msgpack"


async def read_map(request: web.Request, max_bytes: int) -> dict[str, Any]:
    data = await request.read()
    if not data:
        return {}
    try:
        body = unpack(data, max_bytes=max_bytes)
    except DecodeError as exc:
        raise BadRequest(f"request body is not valid msgpack: {exc.message}") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a msgpack map")
    return body


def respond(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=pack(body), status=status, content_type=CONTENT_TYPE)


def error_response(err: RelayError) -> web.Response:
    headers = {}
    retry = err.details.get("retry_after_s")
    if isinstance(retry, int):
        headers["Retry-After"] = str(retry)
    return web.Response(
        body=pack(err.to_wire()), status=err.status, content_type=CONTENT_TYPE, headers=headers
    )


def field_bytes(body: dict[str, Any], name: str, *, optional: bool = False) -> bytes | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, bytes):
        raise BadRequest(f"field {name!r} must be bytes")
    return value


def field_int(body: dict[str, Any], name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"field {name!r} must be a non-negative integer")
    return value


def field_list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list):
        raise BadRequest(f"field {name!r} must be an array")
    return value


def field_counters(body: dict[str, Any], name: str) -> dict[str, int]:
    """A map of id (hex text) → non-negative integer (cursors, version vectors)."""
    value = body.get(name)
    if not isinstance(value, dict):
        raise BadRequest(f"field {name!r} must be a map")
    out: dict[str, int] = {}
    for key, count in value.items():
        if not isinstance(key, str) or not isinstance(count, int) or count < 0:
            raise BadRequest(f"field {name!r} maps ids to non-negative integers")
        out[key] = count
    return out


def query_int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter {name!r} must be an integer") from exc
    if value < 0:
        raise BadRequest(f"query parameter {name!r} must not be negative")
    return value


def hex_id(text: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise BadRequest(f"{what} must be hex") from exc
    if len(raw) != size or text != raw.hex():
        raise BadRequest(f"{what} must be {size} bytes in lower-case hex")
    return raw
