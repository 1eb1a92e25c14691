"""Device-linking rendezvous: where a new device and one that holds the user key meet.

Both derive the rendezvous id from the short link code (see :mod:`protocol.linking`); the relay
only pairs them and cannot read or forge what they exchange. The device showing the code opens
the rendezvous (it is logged in, so anonymous clients cannot fill the table); the new device,
which has no certificate yet, posts its request and waits for the grant without a token. So the
anonymous side is tightly bounded: one request per rendezvous, of bounded size, while it lives
(``link_ttl_s``), rate-limited per client address like the login. Rows live in the relay's
database, so two sides talking to different replicas still meet; waiting is polling that row.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.linking import RENDEZVOUS_BYTES, LinkGrant, LinkRequest
from relay import envelopes
from relay.db import Database, Tx
from relay.errors import (
    BadRequest,
    Conflict,
    Expired,
    LinkRefused,
    NotFound,
    RateLimited,
    from_protocol,
)
from relay.settings import Settings
from relay.tokens import Principal
from seams import Clock

#: How often a waiting side looks at the row (the database is the only meeting point).
POLL_INTERVAL_S = 0.2
MAX_REFUSAL_CHARS = 200

NO_SUCH_CODE = (
    "no device is showing this link code: check the code, or show a new one with "
    "`drift device link` on a device of yours"
)
EXPIRED = "this link code has expired; show a new one with `drift device link`"


@dataclass(frozen=True, slots=True)
class _Row:
    opener: str
    expires_ms: int
    request: bytes | None
    answer: bytes | None
    refused: str | None


async def _row(tx: Tx, rendezvous: bytes) -> _Row | None:
    row = await tx.fetchone(
        "SELECT opener, expires_ms, request, answer, refused FROM link_rendezvous "
        "WHERE rendezvous = ?",
        rendezvous,
    )
    if row is None:
        return None
    opener, expires, request, answer, refused = row
    return _Row(
        str(opener),
        int(expires),  # type: ignore[call-overload]
        None if request is None else bytes(request),  # type: ignore[arg-type]
        None if answer is None else bytes(answer),  # type: ignore[arg-type]
        None if refused is None else str(refused),
    )


async def prune(tx: Tx, now_ms: int) -> None:
    await tx.execute("DELETE FROM link_rendezvous WHERE expires_ms < ?", now_ms)


@dataclass
class Rendezvous:
    db: Database
    clock: Clock
    settings: Settings

    async def open(self, principal: Principal, rendezvous: bytes) -> int:
        """Open a rendezvous for the calling device; when it expires (ms)."""
        _check_id(rendezvous)
        now = self.clock.now_ms()
        async with self.db.write() as tx:
            row = await tx.fetchone(
                "SELECT COUNT(*) FROM link_rendezvous WHERE opener = ? AND expires_ms >= ?",
                principal.device_id,
                now,
            )
            if row is not None and int(row[0]) >= self.settings.link_open_max_per_device:  # type: ignore[call-overload]
                raise RateLimited(
                    "this device already shows several link codes; use one or wait until they "
                    "expire",
                    retry_after_s=self.settings.link_ttl_s,
                )
            existing = await _row(tx, rendezvous)
            if existing is not None:
                if existing.expires_ms >= now:
                    raise Conflict("this link code is already in use; show a new one")
                await tx.execute("DELETE FROM link_rendezvous WHERE rendezvous = ?", rendezvous)
            expires = now + self.settings.link_ttl_s * 1000
            await tx.execute(
                "INSERT INTO link_rendezvous (rendezvous, opener, expires_ms) VALUES (?, ?, ?)",
                rendezvous,
                principal.device_id,
                expires,
            )
        return expires

    async def post_request(self, rendezvous: bytes, body: bytes) -> None:
        """The new device's request (no token); a rendezvous takes one, an identical resend is
        harmless, anything else is refused."""
        _check_id(rendezvous)
        request = envelopes.decode(LinkRequest, body)
        if request.rendezvous != rendezvous:
            raise BadRequest("the link request names another rendezvous than its URL")
        async with self.db.write() as tx:
            row = await self._live(tx, rendezvous)
            if row.request is not None:
                if row.request == body:
                    return
                raise Conflict(
                    "this link code was already used; show a new one with `drift device link`"
                )
            await tx.execute(
                "UPDATE link_rendezvous SET request = ? WHERE rendezvous = ?", body, rendezvous
            )

    async def wait_request(
        self, principal: Principal, rendezvous: bytes, timeout_s: float
    ) -> bytes | None:
        """The request, once the new device posted it (None at the timeout)."""
        _check_id(rendezvous)
        deadline = self.clock.monotonic() + self._bounded(timeout_s)
        while True:
            async with self.db.read() as tx:
                row = await self._live(tx, rendezvous, opener=principal.device_id)
            if row.request is not None or self.clock.monotonic() >= deadline:
                return row.request
            await self.clock.sleep(POLL_INTERVAL_S)

    async def answer(
        self,
        principal: Principal,
        rendezvous: bytes,
        grant: bytes | None,
        refused: str | None,
    ) -> None:
        """The opener's answer to the request: a grant, or why it refused."""
        _check_id(rendezvous)
        if (grant is None) == (refused is None):
            raise BadRequest("answer with either a grant or a refusal")
        if grant is not None:
            decoded = envelopes.decode(LinkGrant, grant)
            if decoded.rendezvous != rendezvous:
                raise BadRequest("the link grant names another rendezvous than its URL")
            try:
                decoded.certificate.verify()
            except ProtocolError as exc:
                raise from_protocol(exc) from exc
        if refused is not None:
            refused = refused[:MAX_REFUSAL_CHARS]
        async with self.db.write() as tx:
            row = await self._live(tx, rendezvous, opener=principal.device_id)
            if row.request is None:
                raise Conflict("no link request has arrived at this rendezvous yet")
            if row.answer is not None or row.refused is not None:
                if (row.answer, row.refused) == (grant, refused):
                    return
                raise Conflict("this link request was already answered")
            await tx.execute(
                "UPDATE link_rendezvous SET answer = ?, refused = ? WHERE rendezvous = ?",
                grant,
                refused,
                rendezvous,
            )

    async def wait_grant(self, rendezvous: bytes, timeout_s: float) -> bytes | None:
        """The grant for the request posted here (no token; None at the timeout)."""
        _check_id(rendezvous)
        deadline = self.clock.monotonic() + self._bounded(timeout_s)
        while True:
            async with self.db.read() as tx:
                row = await self._live(tx, rendezvous)
            if row.request is None:
                raise Conflict("post the link request before waiting for its grant")
            if row.refused is not None:
                raise LinkRefused(f"the device showing the code refused: {row.refused}")
            if row.answer is not None or self.clock.monotonic() >= deadline:
                return row.answer
            await self.clock.sleep(POLL_INTERVAL_S)

    async def _live(self, tx: Tx, rendezvous: bytes, opener: str | None = None) -> _Row:
        row = await _row(tx, rendezvous)
        if row is None or (opener is not None and row.opener != opener):
            raise NotFound(NO_SUCH_CODE)
        if row.expires_ms < self.clock.now_ms():
            raise Expired(EXPIRED)
        return row

    def _bounded(self, timeout_s: float) -> float:
        return min(max(0.0, timeout_s), self.settings.longpoll_timeout_s)


def _check_id(rendezvous: bytes) -> None:
    if len(rendezvous) != RENDEZVOUS_BYTES:
        raise BadRequest(f"a rendezvous id is {RENDEZVOUS_BYTES} bytes")
