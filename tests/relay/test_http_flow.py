"""Every endpoint over real HTTP on loopback, on SQLite + directory and PostgreSQL + S3 + Redis."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from protocol.chain import Role
from protocol.codec import pack

from .conftest import RelayUnderTest
from .helpers import NOW_MS, Inbox, add_member, block, create_share, login, new_device, publish


async def test_health_and_metrics(relay: RelayUnderTest) -> None:
    health = await relay.api.call("GET", "/healthz")
    assert health.status == 200
    assert health.body == {"status": "ok"}
    assert (await relay.api.call("GET", "/livez")).status == 200
    metrics = await relay.api.call("GET", "/metrics")
    assert metrics.status == 200
    assert b"drift_relay_requests_total" in metrics.body


async def test_log_flow(relay: RelayUnderTest) -> None:
    api = relay.api
    owner, editor = new_device(), new_device()
    assert (await login(api, owner)).status == 200
    assert (await login(api, editor)).status == 200
    share = await create_share(api, owner)
    await add_member(api, share, editor, Role.EDITOR)

    shares = await api.call("GET", "/v1/shares", token=editor.token)
    assert shares.body["shares"] == [{"share": share.hex, "role": "editor", "last_seq": 0}]
    chain = await api.call("GET", f"{share.path}/chain?from=1", token=editor.token)
    assert len(chain.body["entries"]) == 1

    started_ms = time.time_ns() // 10**6
    e1 = owner.next_envelope(share.share_id, share.key, height=1)
    e2 = owner.next_envelope(share.share_id, share.key, height=1)
    first = await publish(api, share, owner, e1, e2)
    assert first.status == 200, first.body
    assert first.body["seqs"] == [1, 2]
    f1 = editor.next_envelope(share.share_id, share.key, height=1, seen={owner.device_id: 2})
    assert (await publish(api, share, editor, f1)).body["seqs"] == [3]

    # An identical resend is answered with its original sequence number.
    again = await publish(api, share, owner, e2)
    assert again.body == {"seqs": [2], "appended": 0, "last_seq": 3}

    page = await api.call("GET", f"{share.path}/envelopes?since=1&limit=1", token=editor.token)
    ((seq, body, appended_ms),) = page.body["entries"]
    assert (seq, body) == (2, e2)
    assert started_ms <= appended_ms <= time.time_ns() // 10**6
    assert page.body["more"] is True
    assert page.body["last_seq"] == 3
    vector = await api.call("GET", f"{share.path}/vector", token=editor.token)
    assert vector.body["vector"] == {owner.hex: 2, editor.hex: 1}
    missing = await api.call(
        "POST", f"{share.path}/missing", {"vector": {owner.hex: 1}}, token=editor.token
    )
    assert [seq for seq, *_ in missing.body["entries"]] == [2, 3]


async def test_blocks_and_owed(relay: RelayUnderTest) -> None:
    api = relay.api
    owner = new_device()
    await login(api, owner)
    share = await create_share(api, owner)
    small = [block(f"sealed block {i}".encode() * 40) for i in range(5)]
    big_id, big = block(b"\x07" * (2 << 20))
    env = owner.next_envelope(share.share_id, share.key, blocks=(big_id, small[0][0]))
    assert (await publish(api, share, owner, env)).status == 200
    owed = await api.call("GET", f"{share.path}/owed", token=owner.token)
    assert sorted(owed.body["blocks"]) == sorted([big_id, small[0][0]])

    have = await api.call("POST", f"{share.path}/blocks/have", {"ids": [big_id]}, token=owner.token)
    assert have.body == {"have": []}
    put = await api.call("PUT", f"{share.path}/blocks/{big_id.hex()}", raw=big, token=owner.token)
    assert put.status == 201
    again = await api.call("PUT", f"{share.path}/blocks/{big_id.hex()}", raw=big, token=owner.token)
    assert again.status == 200
    batch = await api.call(
        "POST",
        f"{share.path}/blocks/put",
        {"blocks": [list(b) for b in small]},
        token=owner.token,
    )
    assert batch.body == {"new": 5}
    assert (await api.call("GET", f"{share.path}/owed", token=owner.token)).body["blocks"] == []

    got = await api.call("GET", f"{share.path}/blocks/{big_id.hex()}", token=owner.token)
    assert got.status == 200
    assert got.body == big
    many = await api.call(
        "POST", f"{share.path}/blocks/get", {"ids": [b for b, _ in small]}, token=owner.token
    )
    assert dict(map(tuple, many.body["blocks"])) == dict(small)
    have = await api.call(
        "POST", f"{share.path}/blocks/have", {"ids": [big_id, b"\x01" * 32]}, token=owner.token
    )
    assert have.body == {"have": [big_id]}

    wrong_id = (b"\x02" * 32).hex()
    wrong = await api.call(
        "PUT", f"{share.path}/blocks/{wrong_id}", raw=b"not it", token=owner.token
    )
    assert wrong.status == 422
    assert wrong.code == "block_mismatch"
    have = await api.call(
        "POST", f"{share.path}/blocks/have", {"ids": [b"\x02" * 32]}, token=owner.token
    )
    assert have.body == {"have": []}


async def test_long_poll_and_websocket(relay: RelayUnderTest) -> None:
    api = relay.api
    owner = new_device()
    await login(api, owner)
    share = await create_share(api, owner)

    poll = asyncio.create_task(
        api.call("POST", "/v1/poll", {"cursors": {share.hex: 0}, "timeout_s": 5}, token=owner.token)
    )
    headers = {"Authorization": f"Bearer {owner.token}"}
    inbox = Inbox(await api.session.ws_connect(api.base + "/v1/ws", headers=headers))
    await inbox.ws.send_bytes(pack({"type": "subscribe", "cursors": {share.hex: 0}}))
    hello = await inbox.next()
    assert hello == {"type": "heads", "heads": {share.hex: 0}, "chains": {share.hex: 0}}
    env = owner.next_envelope(share.share_id, share.key)
    assert (await publish(api, share, owner, env)).status == 200
    await add_member(api, share, new_device(), Role.VIEWER)
    final = {"type": "heartbeat", "heads": {share.hex: 1}, "chains": {share.hex: 1}}
    seen = [await inbox.next()]
    while seen[-1] != final:
        assert seen[-1] is not None, f"disconnected after {seen}"
        seen.append(await inbox.next())
    appended = [m for m in seen if m["type"] == "append"]
    assert [(m["share"], m["seq"], m["since"]) for m in appended] == [(share.hex, 1, 0)]
    # The new entry itself, as the log serves it: the device need not read the log.
    log = await api.call("GET", f"/v1/shares/{share.hex}/envelopes?since=0", token=owner.token)
    assert appended[0]["entries"] == log.body["entries"]
    assert appended[0]["entries"][0][1] == env
    assert {"type": "chain", "share": share.hex, "height": 1} in seen
    assert all(m is not None and m["type"] in ("append", "chain", "heartbeat") for m in seen)
    await inbox.close()
    polled = await asyncio.wait_for(poll, 10)
    assert polled.body == {"heads": {share.hex: 1}}
    # A cursor behind the head answers at once.
    quick = await api.call(
        "POST", "/v1/poll", {"cursors": {share.hex: 0}, "timeout_s": 30}, token=owner.token
    )
    assert quick.body == {"heads": {share.hex: 1}}


async def test_token_never_in_url(relay: RelayUnderTest) -> None:
    owner = new_device()
    await login(relay.api, owner)
    answer = await relay.api.call("GET", f"/v1/shares?access_token={owner.token}")
    assert answer.status == 400
    async with aiohttp.ClientSession() as session:
        url = f"{relay.api.base}/v1/ws?token={owner.token}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 400


async def test_recovery_blob_and_revocation(relay: RelayUnderTest) -> None:
    api = relay.api
    alice, bob = new_device(), new_device()
    await login(api, alice)
    await login(api, bob)
    assert (await api.call("GET", "/v1/recovery", token=alice.token)).status == 404
    put = await api.call("PUT", "/v1/recovery", {"blob": b"wrapped user key"}, token=alice.token)
    assert put.status == 200
    got = await api.call("GET", "/v1/recovery", token=alice.token)
    assert got.body == {"blob": b"wrapped user key"}
    assert (await api.call("GET", "/v1/recovery", token=bob.token)).status == 404

    # Bob cannot revoke Alice's device; Alice can, and the device is refused at once.
    statement = alice.user.revoke(alice.device_id, NOW_MS).encode()
    refused = await api.call(
        "POST", "/v1/devices/revoke", {"revocation": statement}, token=bob.token
    )
    assert refused.status == 403
    laptop2 = new_device(alice.user, "phone")
    await login(api, laptop2)
    done = await api.call(
        "POST", "/v1/devices/revoke", {"revocation": statement}, token=laptop2.token
    )
    assert done.body == {"new": True}
    gone = await api.call("GET", "/v1/shares", token=alice.token)
    assert (gone.status, gone.code) == (403, "device_revoked")
    again = await login(api, alice)
    assert (again.status, again.code) == (403, "device_revoked")
    assert (await api.call("GET", "/v1/shares", token=laptop2.token)).status == 200
