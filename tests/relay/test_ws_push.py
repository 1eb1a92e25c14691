"""Append notifications carry the new log entries when they are few and small, read with the
subscriber's own rights: a member removed meanwhile gets an error, never an entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protocol.chain import Role
from protocol.codec import pack
from relay.http.ws import PUSH_MAX_BYTES, PUSH_MAX_ENTRIES
from relay.settings import Settings
from tests.conftest import free_port

from .conftest import RelayUnderTest, running_relay
from .helpers import Inbox, add_member, create_share, login, new_device, publish, remove_member


async def _subscribe(relay: RelayUnderTest, token: str, share_hex: str) -> Inbox:
    headers = {"Authorization": f"Bearer {token}"}
    inbox = Inbox(await relay.api.session.ws_connect(relay.api.base + "/v1/ws", headers=headers))
    await inbox.ws.send_bytes(pack({"type": "subscribe", "cursors": {share_hex: 0}}))
    hello = await inbox.next()
    assert hello is not None
    assert hello["type"] == "heads"
    return inbox


async def _next_append(inbox: Inbox) -> dict[str, Any] | None:
    while True:
        message = await inbox.next()
        if message is None or message["type"] in ("append", "error"):
            return message


def _settings(tmp_path: Path) -> Settings:
    return Settings(port=free_port(), data_dir=tmp_path, heartbeat_s=60.0, token_ttl_s=600)


async def test_pushed_entries_follow_on_and_big_ones_are_only_announced(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path)) as relay:
        owner = new_device()
        await login(relay.api, owner)
        share = await create_share(relay.api, owner)
        inbox = await _subscribe(relay, owner.token, share.hex)

        first = owner.next_envelope(share.share_id, share.key, update=b"a")
        assert (await publish(relay.api, share, owner, first)).status == 200
        pushed = await _next_append(inbox)
        assert pushed is not None
        assert (pushed["seq"], pushed["since"], [e[:2] for e in pushed["entries"]]) == (
            1,
            0,
            [[1, first]],
        )

        # The next push starts where the last one ended.
        second = owner.next_envelope(share.share_id, share.key, update=b"b")
        assert (await publish(relay.api, share, owner, second)).status == 200
        pushed = await _next_append(inbox)
        assert pushed is not None
        assert (pushed["since"], [e[:2] for e in pushed["entries"]]) == (1, [[2, second]])

        # Too big to push: the notification names the head, the device reads the log.
        big = owner.next_envelope(share.share_id, share.key, update=b"x" * (PUSH_MAX_BYTES + 1))
        assert (await publish(relay.api, share, owner, big)).status == 200
        pushed = await _next_append(inbox)
        assert pushed == {"type": "append", "share": share.hex, "seq": 3}

        # More entries at once than a push carries: announced only.
        many = [
            owner.next_envelope(share.share_id, share.key, update=bytes([i]))
            for i in range(PUSH_MAX_ENTRIES + 1)
        ]
        assert (await publish(relay.api, share, owner, *many)).status == 200
        pushed = await _next_append(inbox)
        assert pushed == {"type": "append", "share": share.hex, "seq": 4 + PUSH_MAX_ENTRIES}
        await inbox.close()


async def test_a_removed_member_gets_an_error_not_the_entry(tmp_path: Path) -> None:
    async with running_relay(_settings(tmp_path)) as relay:
        owner, editor = new_device(), new_device()
        for device in (owner, editor):
            await login(relay.api, device)
        share = await create_share(relay.api, owner)
        await add_member(relay.api, share, editor, Role.EDITOR)
        inbox = await _subscribe(relay, editor.token, share.hex)
        # Heartbeats a minute apart: the removal is not noticed before the next append.
        await remove_member(relay.api, share, editor, cutoff=0)
        secret = owner.next_envelope(share.share_id, share.key, height=2, update=b"after")
        assert (await publish(relay.api, share, owner, secret)).status == 200
        got: list[dict[str, Any]] = []
        while (message := await inbox.next()) is not None:
            got.append(message)
        assert got[-1]["error"] == "not_member"
        assert not any(m.get("entries") for m in got)
        await inbox.close()
