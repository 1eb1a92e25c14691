"""A login whose token answer is lost starts over with a fresh challenge (nonces are single-use)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

from peer.remote.backoff import Backoff
from peer.remote.http import HttpRelayLink
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity
from seams import OsRandom, SystemClock
from tests.conftest import free_port

from .harness import running_relay


async def test_a_lost_token_answer_is_retried_with_a_fresh_challenge(tmp_path: Path) -> None:
    proxy_port = free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    seen: Counter[str] = Counter()
    async with (
        running_relay(tmp_path / "relay", origin=proxy_url) as relay_url,
        aiohttp.ClientSession() as upstream,
    ):

        async def forward(request: web.Request) -> web.StreamResponse:
            """A gateway in front of the relay that loses the first token answer."""
            seen[request.path] += 1
            async with upstream.request(
                request.method,
                relay_url + request.path_qs,
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as answer:
                body = await answer.read()
                if request.path == "/v1/auth/token" and seen[request.path] == 1:
                    raise web.HTTPBadGateway()  # the relay issued a token; it never arrives
                return web.Response(
                    status=answer.status,
                    body=body,
                    content_type=answer.content_type,
                )

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", proxy_port).start()
        user, identity = UserIdentity.generate(), DeviceIdentity.generate()
        device = CertifiedDevice(
            identity, user.certify(identity.public_key, "laptop", time.time_ns() // 10**6)
        )
        link = HttpRelayLink(
            proxy_url,
            device,
            clock=SystemClock(),
            rng=OsRandom(),
            backoff=Backoff(base_s=0.01, cap_s=0.05, attempts=4),
        )
        link.register = True
        try:
            await link.login()
            assert await link.list_shares() == []
        finally:
            await link.close()
            await runner.cleanup()
    assert seen["/v1/auth/token"] == 2
    assert seen["/v1/auth/challenge"] == 2


async def test_connections_open_through_the_given_connector_factory(tmp_path: Path) -> None:
    """Simulations dial over a simulated network this way; here a counting TCP factory."""
    made: list[aiohttp.BaseConnector] = []

    def factory() -> aiohttp.BaseConnector:
        made.append(aiohttp.TCPConnector(limit=2))
        return made[-1]

    async with running_relay(tmp_path / "relay") as relay_url:
        user, identity = UserIdentity.generate(), DeviceIdentity.generate()
        device = CertifiedDevice(
            identity, user.certify(identity.public_key, "laptop", time.time_ns() // 10**6)
        )
        link = HttpRelayLink(
            relay_url, device, clock=SystemClock(), rng=OsRandom(), connector_factory=factory
        )
        link.register = True
        try:
            await link.login()
            assert await link.list_shares() == []
            assert len(made) == 1
            assert link.session.connector is made[0]
        finally:
            await link.close()
    assert made[0].closed
