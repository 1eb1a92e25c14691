"""Registration policy, quotas, write rate limits, forwarding and graceful shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp

from protocol.chain import Role, make_revoke_device
from protocol.codec import pack, unpack
from relay.http.context import SERVICE
from relay.settings import Settings
from tests.conftest import free_port

from .conftest import running_relay
from .helpers import NOW_MS, add_member, block, create_share, extend, login, new_device, publish


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return replace(Settings(port=free_port(), data_dir=tmp_path, heartbeat_s=1.0), **changes)


async def test_invite_only_registration(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path, registration="invite")) as relay:
        await relay.app[SERVICE].create_invite("WELCOME")
        first, second = new_device(), new_device()
        refused = await login(relay.api, first)
        assert (refused.status, refused.code) == (403, "registration_closed")
        assert (await login(relay.api, first, invite="WRONG")).status == 403
        assert (await login(relay.api, first, invite="WELCOME")).status == 200
        used = await login(relay.api, second, invite="WELCOME")
        assert (used.status, used.code) == (403, "registration_closed")
        # A known user's new device needs no invite.
        assert (await login(relay.api, new_device(first.user), register=False)).status == 200


async def test_quota_and_rate_limit(tmp_path: Path) -> None:
    settings = _settings(tmp_path, quota_bytes_default=5000, writes_per_minute_per_user=5)
    async with running_relay(settings) as relay:
        api = relay.api
        owner = new_device()
        await login(api, owner)
        share = await create_share(api, owner)
        big = block(b"x" * 3000)
        assert (
            await api.call(
                "POST", f"{share.path}/blocks/put", {"blocks": [list(big)]}, token=owner.token
            )
        ).status == 200
        over = block(b"y" * 2500)
        full = await api.call(
            "POST", f"{share.path}/blocks/put", {"blocks": [list(over)]}, token=owner.token
        )
        assert (full.status, full.code) == (507, "quota_exceeded")
        have = await api.call(
            "POST", f"{share.path}/blocks/have", {"ids": [over[0]]}, token=owner.token
        )
        assert have.body == {"have": []}
        statuses = []
        for _ in range(5):
            env = owner.next_envelope(share.share_id, share.key, advance=False)
            answer = await publish(api, share, owner, env)
            statuses.append(answer.status)
            if answer.status == 200:
                owner.accepted(env)
        # The stored block was write 1 (the refused put was rolled back with its count).
        assert statuses == [200, 200, 200, 200, 429]
        limited = await publish(
            api, share, owner, owner.next_envelope(share.share_id, share.key, advance=False)
        )
        assert limited.status == 429
        assert int(limited.headers["Retry-After"]) >= 1


async def test_members_forward_others_envelopes(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path)) as relay:
        api = relay.api
        owner, editor, viewer = new_device(), new_device(), new_device()
        await login(api, owner)
        await login(api, viewer)
        share = await create_share(api, owner)
        await add_member(api, share, editor, Role.EDITOR)  # this device never met the relay
        await add_member(api, share, viewer, Role.VIEWER)
        e1 = editor.next_envelope(share.share_id, share.key, height=share.chain.height)
        e2 = editor.next_envelope(share.share_id, share.key, height=share.chain.height)
        unknown = await publish(api, share, viewer, e1)
        assert (unknown.status, unknown.code) == (400, "bad_request")
        forwarded = await publish(api, share, editor, e1, e2, as_device=viewer, with_cert=True)
        assert forwarded.body["seqs"] == [1, 2]
        # A viewer's own envelope is refused by the chain, forwarded or not.
        own = viewer.next_envelope(share.share_id, share.key, height=share.chain.height)
        refused = await publish(api, share, viewer, own, with_cert=True)
        assert (refused.status, refused.code) == (403, "forbidden")


async def test_graceful_shutdown_tells_subscribers(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    session = aiohttp.ClientSession()
    try:
        async with running_relay(settings) as relay:
            owner = new_device()
            await login(relay.api, owner)
            share = await create_share(relay.api, owner)
            ws = await session.ws_connect(
                relay.api.base + "/v1/ws", headers={"Authorization": f"Bearer {owner.token}"}
            )
            await ws.send_bytes(pack({"type": "subscribe", "cursors": {share.hex: 0}}))
            assert unpack(await ws.receive_bytes(timeout=5))["type"] == "heads"
            reader = asyncio.create_task(ws.receive(timeout=10))
        closing = await asyncio.wait_for(reader, 10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1001
    finally:
        await session.close()


async def test_revocation_in_a_chain_refuses_the_device_everywhere(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path)) as relay:
        api = relay.api
        owner, lost = new_device(), new_device()
        await login(api, owner)
        await login(api, lost)
        share = await create_share(api, owner)
        await add_member(api, share, lost, Role.EDITOR)
        revocation = lost.user.revoke(lost.device_id, NOW_MS)
        entry = make_revoke_device(share.chain, owner.certified, revocation, 0, NOW_MS)
        assert (await extend(api, share, entry, owner)).status == 200
        refused = await api.call("GET", "/v1/shares", token=lost.token)
        assert (refused.status, refused.code) == (403, "device_revoked")


async def test_login_requests_are_throttled_per_client(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path, logins_per_minute_per_client=3)) as relay:
        statuses = [(await relay.api.call("POST", "/v1/auth/challenge")).status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await relay.api.call("POST", "/v1/auth/challenge")
        assert limited.code == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await relay.api.call("GET", "/healthz")).status == 200


async def test_a_batched_block_upload_counts_once_against_the_rate_limit(tmp_path: Path) -> None:
    settings = _settings(tmp_path, writes_per_minute_per_user=3)
    async with running_relay(settings) as relay:
        api = relay.api
        owner = new_device()
        await login(api, owner)
        share = await create_share(api, owner)
        statuses = []
        for batch in range(4):
            blocks = [list(block(f"small block {batch}/{i}".encode())) for i in range(50)]
            answer = await api.call(
                "POST", f"{share.path}/blocks/put", {"blocks": blocks}, token=owner.token
            )
            statuses.append(answer.status)
        # Fifty blocks a request, three requests allowed a minute: the fourth is refused.
        assert statuses == [200, 200, 200, 429]
