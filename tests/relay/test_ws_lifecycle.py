"""A WebSocket lives no longer than its token or its device's membership."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protocol.chain import Role
from protocol.codec import pack, unpack
from relay.settings import Settings
from tests.conftest import free_port

from .conftest import RelayUnderTest, running_relay
from .helpers import add_member, create_share, login, new_device, remove_member


def _settings(tmp_path: Path, ttl_s: int) -> Settings:
    return Settings(port=free_port(), data_dir=tmp_path, heartbeat_s=0.5, token_ttl_s=ttl_s)


async def _subscribe(relay: RelayUnderTest, token: str, share_hex: str):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"}
    ws = await relay.api.session.ws_connect(relay.api.base + "/v1/ws", headers=headers)
    await ws.send_bytes(pack({"type": "subscribe", "cursors": {share_hex: 0}}))
    assert unpack(await ws.receive_bytes(timeout=5))["type"] == "heads"
    return ws


async def _collect(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    """Read (and so answer pings) until the socket closes, as a device would."""
    while True:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.BINARY:
            return
        into.append(unpack(msg.data))


async def test_socket_closes_when_its_token_expires_unless_renewed(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path, ttl_s=4)) as relay:
        owner = new_device()
        await login(relay.api, owner)
        share = await create_share(relay.api, owner)
        expiring = await _subscribe(relay, owner.token, share.hex)
        renewed = await _subscribe(relay, owner.token, share.hex)
        got_expiring: list[dict[str, Any]] = []
        got_renewed: list[dict[str, Any]] = []
        readers = [
            asyncio.create_task(_collect(expiring, got_expiring)),
            asyncio.create_task(_collect(renewed, got_renewed)),
        ]
        await asyncio.sleep(2.1)  # tokens are stamped in whole seconds
        await login(relay.api, owner)  # a fresh token for the same device
        await renewed.send_bytes(pack({"type": "auth", "token": owner.token}))
        await asyncio.wait_for(readers[0], 15)
        assert got_expiring[-1]["error"] == "unauthenticated"
        assert expiring.close_code == 4401
        assert not renewed.closed
        assert [m["type"] for m in got_renewed if m["type"] != "heartbeat"] == ["auth_ok"]
        await renewed.close()
        await asyncio.wait_for(readers[1], 5)


async def test_removed_member_is_disconnected(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path, ttl_s=600)) as relay:
        owner, editor, stranger = new_device(), new_device(), new_device()
        for device in (owner, editor, stranger):
            await login(relay.api, device)
        share = await create_share(relay.api, owner)
        await add_member(relay.api, share, editor, Role.EDITOR)
        ws = await _subscribe(relay, editor.token, share.hex)
        got: list[dict[str, Any]] = []
        reader = asyncio.create_task(_collect(ws, got))
        await remove_member(relay.api, share, editor, cutoff=0)
        await asyncio.wait_for(reader, 15)
        assert got[-1]["error"] == "not_member"
        assert ws.close_code == 4403

        # A non-member's subscription is refused outright, and the socket stays usable.
        other = await relay.api.session.ws_connect(
            relay.api.base + "/v1/ws", headers={"Authorization": f"Bearer {stranger.token}"}
        )
        await other.send_bytes(pack({"type": "subscribe", "cursors": {share.hex: 0}}))
        assert unpack(await other.receive_bytes(timeout=5))["error"] == "not_member"
        await other.send_bytes(b"\x00\x01")
        assert unpack(await other.receive_bytes(timeout=5))["type"] == "error"
        await other.close()


async def test_idle_socket_without_subscription_closes_at_expiry(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path, ttl_s=2)) as relay:
        owner = new_device()
        await login(relay.api, owner)
        ws = await relay.api.session.ws_connect(
            relay.api.base + "/v1/ws", headers={"Authorization": f"Bearer {owner.token}"}
        )
        got: list[dict[str, Any]] = []
        await asyncio.wait_for(_collect(ws, got), 10)
        assert got[-1]["error"] == "unauthenticated"
        assert ws.close_code == 4401


async def test_revoked_device_is_disconnected_at_once(tmp_path: Path) -> None:
    # Heartbeats a minute apart: only the revocation itself can close the socket in time.
    settings = replace(_settings(tmp_path, ttl_s=600), heartbeat_s=60.0)
    async with running_relay(settings) as relay:
        laptop = new_device()
        phone = new_device(laptop.user, name="phone")
        for device in (laptop, phone):
            await login(relay.api, device)
        share = await create_share(relay.api, laptop)
        ws = await _subscribe(relay, phone.token, share.hex)
        got: list[dict[str, Any]] = []
        reader = asyncio.create_task(_collect(ws, got))
        revocation = laptop.user.revoke(phone.device_id, int(time.time() * 1000))
        answer = await relay.api.call(
            "POST", "/v1/devices/revoke", {"revocation": revocation.encode()}, token=laptop.token
        )
        assert answer.status == 200, answer.body
        await asyncio.wait_for(reader, 5)
        assert got[-1]["error"] == "device_revoked"
        assert ws.close_code == 4403
        # Its token, still unexpired, opens no new socket either.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await relay.api.session.ws_connect(
                relay.api.base + "/v1/ws", headers={"Authorization": f"Bearer {phone.token}"}
            )
        assert refused.value.status == 403
