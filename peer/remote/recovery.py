"""Claiming the recovery blob from a relay with the recovery code alone (no device, no token).

The device takes a login challenge, signs a ``RecoveryProof`` with the key the code derives
(``protocol.recovery``) and gets back the blob the account registered; the code itself never
leaves the device. Used once, by ``drift recover``, before this device has any identity.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from peer.errors import RelayRefused, RelayUnreachable
from protocol.auth import AuthChallenge
from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.recovery import RecoveryBlob, prove_recovery
from seams import Clock

CONTENT_TYPE = "application/msgpack"
MAX_ANSWER_BYTES = 64 * 1024


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any] | None) -> Any:
    data = pack(body) if body is not None else None
    try:
        async with session.post(url, data=data, headers={"Content-Type": CONTENT_TYPE}) as resp:
            payload = await resp.content.read(MAX_ANSWER_BYTES + 1)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise RelayUnreachable(
            f"cannot reach the relay at {url}: {exc or type(exc).__name__}",
            hint="check the network and the relay URL",
        ) from exc
    try:
        decoded = unpack(payload, max_bytes=MAX_ANSWER_BYTES) if payload else None
    except ProtocolError:
        decoded = None
    if status >= 300:
        error = decoded if isinstance(decoded, dict) else {}
        raise RelayRefused(
            str(error.get("error", "refused")), str(error.get("message", f"HTTP {status}")), status
        )
    if not isinstance(decoded, dict):
        raise RelayUnreachable(f"{url} did not answer like a driftsync relay")
    return decoded


async def claim_recovery_blob(base: str, code: str, clock: Clock) -> RecoveryBlob:
    """The recovery blob of the account whose recovery code is ``code``, from the relay at
    ``base`` (a normalized URL: it is the origin the proof names)."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answer = await _post(session, base + "/v1/auth/challenge", None)
        try:
            challenge = AuthChallenge.decode(answer.get("challenge", b""))
        except ProtocolError as exc:
            raise RelayUnreachable(f"the relay at {base} sent an unreadable challenge") from exc
        proof = prove_recovery(code, base, challenge.server_nonce, clock.now_ms())
        answer = await _post(session, base + "/v1/auth/recover", {"proof": proof.encode()})
    try:
        return RecoveryBlob.decode(answer.get("blob", b""))
    except ProtocolError as exc:
        raise RelayUnreachable(f"the relay at {base} sent a damaged recovery blob") from exc
