"""One msgpack request to the relay without a token: for a device that has no identity yet
(claiming a recovery blob, the new side of a link rendezvous)."""

from __future__ import annotations

from typing import Any

import aiohttp

from peer.errors import RelayRefused, RelayUnreachable
from protocol.codec import pack, unpack
from protocol.errors import ProtocolError

CONTENT_TYPE = "application/msgpack"


async def call_relay(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    *,
    relay: str,
    max_answer_bytes: int,
    hint: str,
) -> dict[str, Any]:
    """The relay's decoded answer; ``relay`` names it in errors, ``hint`` says what to check."""
    data = pack(body) if body is not None else None
    try:
        async with session.request(
            method, url, data=data, headers={"Content-Type": CONTENT_TYPE}
        ) as resp:
            payload = await resp.content.read(max_answer_bytes + 1)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise RelayUnreachable(
            f"cannot reach the relay at {relay}: {exc or type(exc).__name__}", hint=hint
        ) from exc
    try:
        decoded = unpack(payload, max_bytes=max_answer_bytes) if payload else None
    except ProtocolError:
        decoded = None
    if status >= 300:
        error = decoded if isinstance(decoded, dict) else {}
        raise RelayRefused(
            str(error.get("error", "refused")), str(error.get("message", f"HTTP {status}")), status
        )
    if not isinstance(decoded, dict):
        raise RelayUnreachable(f"{relay} did not answer like a driftsync relay")
    return decoded
