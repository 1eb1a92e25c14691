"""The ACL matrix: every kind of caller against every share endpoint, allowed or refused."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

from protocol.chain import Role
from protocol.envelope import Envelope
from protocol.keyschedule import KeyRing, wrap_keys
from relay.http.context import SERVICE
from relay.tokens import Principal, TokenAuthority

from .conftest import RelayUnderTest
from .helpers import (
    Answer,
    Api,
    Device,
    Share,
    add_member,
    block,
    create_share,
    login,
    make_add_user_entry,
    new_device,
    publish,
    remove_member,
)

READ = "read"
WRITE = "write"
OWN = "own"

Call = Callable[[Api, Share, Device], Awaitable[Answer]]


def _endpoints(share: Share) -> dict[str, tuple[str, Call]]:
    p = share.path
    stored_id = block(b"stored block" * 50)[0]

    async def chain(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("GET", f"{p}/chain", token=d.token)

    async def log(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("GET", f"{p}/envelopes?since=0", token=d.token)

    async def missing(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("POST", f"{p}/missing", {"vector": {}}, token=d.token)

    async def vector(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("GET", f"{p}/vector", token=d.token)

    async def owed(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("GET", f"{p}/owed", token=d.token)

    async def have(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("POST", f"{p}/blocks/have", {"ids": [stored_id]}, token=d.token)

    async def get_one(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("GET", f"{p}/blocks/{stored_id.hex()}", token=d.token)

    async def get_many(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("POST", f"{p}/blocks/get", {"ids": [stored_id]}, token=d.token)

    async def poll(api: Api, s: Share, d: Device) -> Answer:
        body = {"cursors": {s.hex: 0}, "timeout_s": 0}
        return await api.call("POST", "/v1/poll", body, token=d.token)

    async def append(api: Api, s: Share, d: Device) -> Answer:
        env = d.next_envelope(s.share_id, s.key, height=s.chain.height, advance=False)
        answer = await publish(api, s, d, env, with_cert=True)
        if answer.status == 200:
            d.counter, d.prev = d.counter + 1, Envelope.decode(env).envelope_hash
        return answer

    async def put_one(api: Api, s: Share, d: Device) -> Answer:
        bid, data = block(f"{d.hex} {time.perf_counter_ns()}".encode())
        return await api.call("PUT", f"{p}/blocks/{bid.hex()}", raw=data, token=d.token)

    async def put_many(api: Api, s: Share, d: Device) -> Answer:
        pair = list(block(f"many {d.hex} {time.perf_counter_ns()}".encode()))
        return await api.call("POST", f"{p}/blocks/put", {"blocks": [pair]}, token=d.token)

    async def extend(api: Api, s: Share, d: Device) -> Answer:
        entry = make_add_user_entry(s, d, new_device().user.public_key)
        answer = await api.call("POST", f"{p}/chain", {"entry": entry.encode()}, token=d.token)
        if answer.status == 200:
            s.chain.append(entry)
        return answer

    async def devices(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("GET", f"{p}/devices", token=d.token)

    async def my_keys(api: Api, s: Share, d: Device) -> Answer:
        return await api.call("GET", f"{p}/keys", token=d.token)

    async def put_keys(api: Api, s: Share, d: Device) -> Answer:
        # The caller's own wrap for the owner's device (always a member device).
        ring = KeyRing(s.share_id, (bytes(32),))
        wrap = wrap_keys(ring, d.certified.identity, s.owner.certified.certificate)
        return await api.call("POST", f"{p}/keys", {"wraps": [wrap.encode()]}, token=d.token)

    return {
        "chain": (READ, chain),
        "my_keys": (READ, my_keys),
        "log": (READ, log),
        "missing": (READ, missing),
        "vector": (READ, vector),
        "owed": (READ, owed),
        "have": (READ, have),
        "get_one": (READ, get_one),
        "get_many": (READ, get_many),
        "poll": (READ, poll),
        "append": (WRITE, append),
        "put_one": (WRITE, put_one),
        "put_many": (WRITE, put_many),
        "extend_chain": (OWN, extend),
        "devices": (OWN, devices),
        "put_keys": (OWN, put_keys),
    }


async def test_acl_matrix(relay: RelayUnderTest) -> None:
    api = relay.api
    owner, editor, viewer, removed, outsider = (new_device() for _ in range(5))
    revoked = new_device()
    for device in (owner, editor, viewer, removed, outsider, revoked):
        assert (await login(api, device)).status == 200
    share = await create_share(api, owner)
    for member, role in (
        (editor, Role.EDITOR),
        (viewer, Role.VIEWER),
        (removed, Role.EDITOR),
        (revoked, Role.EDITOR),
    ):
        await add_member(api, share, member, role)
    await remove_member(api, share, removed, cutoff=0)
    revocation = revoked.user.revoke(revoked.device_id, int(time.time() * 1000))
    answer = await api.call(
        "POST", "/v1/devices/revoke", {"revocation": revocation.encode()}, token=revoked.token
    )
    assert answer.body == {"new": True}
    stored = block(b"stored block" * 50)
    assert (
        await api.call(
            "POST", f"{share.path}/blocks/put", {"blocks": [list(stored)]}, token=owner.token
        )
    ).status == 200

    service = relay.app[SERVICE]
    now = int(time.time() * 1000)
    who = Principal(owner.user.user_id.hex(), owner.hex)
    expired = dataclasses.replace(owner, token=service.tokens.issue(who, now - 16 * 60_000).token)
    foreign = TokenAuthority(
        relay.settings.jwt_keys or _local_keys(service), "https://elsewhere", 600
    )
    alien = dataclasses.replace(owner, token=foreign.issue(who, now).token)

    expect_all = {READ: 200, WRITE: 200, OWN: 200}
    callers: dict[str, tuple[Device, dict[str, int]]] = {
        "owner": (owner, expect_all),
        "editor": (editor, {READ: 200, WRITE: 200, OWN: 403}),
        "viewer": (viewer, {READ: 200, WRITE: 403, OWN: 403}),
        "removed": (removed, {READ: 403, WRITE: 403, OWN: 403}),
        "revoked": (revoked, {READ: 403, WRITE: 403, OWN: 403}),
        "outsider": (outsider, {READ: 403, WRITE: 403, OWN: 403}),
        "expired": (expired, {READ: 401, WRITE: 401, OWN: 401}),
        "foreign": (alien, {READ: 401, WRITE: 401, OWN: 401}),
    }
    failures = []
    for name, (device, expected) in callers.items():
        for endpoint, (kind, call) in _endpoints(share).items():
            answer = await call(api, share, device)
            status = 200 if answer.status in (200, 201) else answer.status
            if status != expected[kind]:
                failures.append(f"{name} {endpoint}: {answer.status} {answer.body!r:.120}")
    assert not failures, "\n".join(failures)


def _local_keys(service: object) -> tuple:
    return tuple(service.settings.jwt_keys)  # type: ignore[attr-defined]
