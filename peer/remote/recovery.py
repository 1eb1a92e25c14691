"""Claiming the recovery blob from a relay with the recovery code alone (no device, no token).

The device takes a login challenge, signs a ``RecoveryProof`` with the key the code derives
(``protocol.recovery``) and gets back the blob the account registered; the code itself never
leaves the device. Used once, by ``drift recover``, before this device has any identity.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from peer.errors import RelayUnreachable
from peer.remote.anonymous import call_relay
from protocol.auth import AuthChallenge
from protocol.errors import ProtocolError
from protocol.recovery import RecoveryBlob, prove_recovery
from seams import Clock

MAX_ANSWER_BYTES = 64 * 1024


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any] | None) -> Any:
    return await call_relay(
        session,
        "POST",
        url,
        body,
        relay=url,
        max_answer_bytes=MAX_ANSWER_BYTES,
        hint="check the network and the relay URL",
    )


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
