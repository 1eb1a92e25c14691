"""The new device's side of a link rendezvous at the relay: no certificate yet, so no token.

It posts its ``LinkRequest`` and long-polls for the ``LinkGrant``; the relay pairs it with the
device showing the code (which uses :class:`~peer.remote.http.HttpRelayLink`).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from peer.remote.anonymous import call_relay

MAX_ANSWER_BYTES = 16 * 1024
WAIT_S = 20  # per long poll; the relay caps it at its own long-poll timeout


class RendezvousClient:
    def __init__(self, session: aiohttp.ClientSession, base: str, rendezvous: bytes) -> None:
        self.session = session
        self.base = base
        self.path = f"{base}/v1/link/{rendezvous.hex()}"

    async def post_request(self, request: bytes) -> None:
        await self._call("POST", self.path + "/request", {"request": request})

    async def wait_grant(self) -> bytes | None:
        """The grant, or None if none came within one long poll."""
        answer = await self._call("GET", f"{self.path}/grant?timeout_s={WAIT_S}", None)
        grant = answer.get("grant")
        return grant if isinstance(grant, bytes) else None

    async def _call(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
        return await call_relay(
            self.session,
            method,
            url,
            body,
            relay=self.base,
            max_answer_bytes=MAX_ANSWER_BYTES,
            hint="check the network and the --relay URL",
        )
