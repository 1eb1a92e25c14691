"""The two sides of linking a device with a short code, through the relay's rendezvous.

``show_link_code`` runs on a device that holds the user key: it opens the rendezvous the code
derives, shows the code, waits for one request, certifies the key in it (or refuses it, telling
the other side) and posts the grant. ``link_with_code`` runs on the new device: it makes (or
reuses) its uncertified key, posts the request, waits for the grant, checks it against the code
and installs the certificate. The construction and its checks are :mod:`protocol.linking`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

import aiohttp

from peer.device.home import Home
from peer.device.identity import install_certificate, uncertified_device_key
from peer.errors import DriftError, IntegrityError, UsageError
from peer.remote.rendezvous import WAIT_S, RendezvousClient
from protocol.errors import ProtocolError
from protocol.keys import CertifiedDevice, DeviceCertificate, UserIdentity
from protocol.linking import (
    KdfCost,
    LinkGrant,
    LinkOffer,
    LinkRequest,
    link_secrets,
    make_link_request,
    open_link_grant,
    parse_link_code,
)
from seams import Clock, RandomSource

#: The new device stops waiting after this long even if the relay kept the rendezvous open.
GIVE_UP_S = 15 * 60
DEFAULT_COST = KdfCost()


class LinkHost(Protocol):
    """What the side showing the code needs of its (logged-in) relay link."""

    async def open_link(self, rendezvous: bytes) -> int: ...

    async def wait_link_request(self, rendezvous: bytes, timeout_s: int) -> bytes | None: ...

    async def answer_link(
        self, rendezvous: bytes, *, grant: bytes | None = None, refused: str | None = None
    ) -> None: ...


class LinkFailed(DriftError):
    """A link attempt ended without a linked device; the hint says how to try again."""


async def show_link_code(
    link: LinkHost,
    user: UserIdentity,
    clock: Clock,
    show: Callable[[str, int], None],
    cost: KdfCost = DEFAULT_COST,
) -> DeviceCertificate:
    """Show a code (``show(code, expires_ms)``), link the device that uses it; its certificate."""
    offer = await asyncio.to_thread(LinkOffer.create, clock.now_ms(), cost=cost)
    expires_ms = await link.open_link(offer.rendezvous)
    show(offer.code, expires_ms)
    request_bytes = None
    while request_bytes is None:
        # The relay answers `expired` once the rendezvous is over, which ends this loop.
        request_bytes = await link.wait_link_request(offer.rendezvous, WAIT_S)
    try:
        grant = offer.accept(LinkRequest.decode(request_bytes), user, clock.now_ms())
    except ProtocolError as exc:
        with contextlib.suppress(DriftError):  # the refusal is a courtesy to the other side
            await link.answer_link(offer.rendezvous, refused=exc.message)
        raise LinkFailed(
            f"a link request arrived that was not made with this code ({exc.message}); "
            "no device was linked",
            hint="run `drift device link` again and type the new code on the new device",
        ) from exc
    await link.answer_link(offer.rendezvous, grant=grant.encode())
    return grant.certificate


async def link_with_code(
    home: Home,
    relay_url: str,
    code: str,
    name: str,
    clock: Clock,
    rng: RandomSource,
    cost: KdfCost = DEFAULT_COST,
) -> CertifiedDevice:
    """Make this device one of the user's with the code another device shows."""
    try:
        parse_link_code(code)
    except ProtocolError as exc:
        raise UsageError(
            f"that is not a link code: {exc.message}",
            hint="type the code `drift device link` shows, like ABCD-EFGH-JKMN",
        ) from exc
    secrets = await asyncio.to_thread(link_secrets, code, cost)
    device = uncertified_device_key(home, rng)
    request = make_link_request(secrets, device, name, clock.now_ms())
    timeout = aiohttp.ClientTimeout(total=WAIT_S + 30, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = RendezvousClient(session, relay_url, secrets.rendezvous)
        await client.post_request(request.encode())
        deadline = clock.monotonic() + GIVE_UP_S
        grant_bytes = None
        while grant_bytes is None:
            if clock.monotonic() > deadline:
                raise LinkFailed(
                    "the device showing the code never answered",
                    hint="run `drift device link` there again and type the new code here",
                )
            grant_bytes = await client.wait_grant()
    try:
        certificate = open_link_grant(secrets, LinkGrant.decode(grant_bytes), device)
    except ProtocolError as exc:
        raise IntegrityError(
            f"the answer to the link request does not check out ({exc.message}); "
            "nothing was installed",
            hint="something between the devices altered it: check the --relay URL and run "
            "`drift device link` again",
        ) from exc
    return install_certificate(home, certificate)
