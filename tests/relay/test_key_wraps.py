"""The key-wrap mailbox and the member-device list over real HTTP, on both backends.

An owner device wraps a share's keys for each member device; each device takes only its own wrap
and opens it against the chain the relay serves. Whatever the relay cannot check (the box) the
recipient checks; what it can check (who leaves a wrap, for whom, for which epoch) it refuses
with a clear error.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from protocol.chain import (
    ChainEntry,
    MembershipChain,
    Role,
    make_add_user,
    make_genesis,
    make_key_epoch,
)
from protocol.errors import BadKey, Forbidden
from protocol.keys import DeviceCertificate
from protocol.keyschedule import (
    EpochKeyWrap,
    KeyRing,
    open_keys,
    open_user_keys,
    wrap_keys,
    wrap_keys_for_user,
)

from .conftest import RelayUnderTest
from .helpers import (
    NOW_MS,
    Api,
    Device,
    Share,
    add_member,
    extend,
    login,
    new_device,
    remove_member,
)


async def _keyed_share(api: Api, owner: Device) -> tuple[Share, KeyRing]:
    share_id = os.urandom(16)
    ring = KeyRing.create(share_id)
    genesis = make_genesis(owner.certified, share_id, ring.epoch(0).key_hash, NOW_MS)
    answer = await api.call("POST", "/v1/shares", {"genesis": genesis.encode()}, token=owner.token)
    assert answer.status == 201, answer.body
    return Share(share_id, owner, MembershipChain(genesis)), ring


async def _put(api: Api, share: Share, caller: Device, *wraps: EpochKeyWrap) -> tuple[int, dict]:
    answer = await api.call(
        "POST", f"{share.path}/keys", {"wraps": [w.encode() for w in wraps]}, token=caller.token
    )
    return answer.status, answer.body


async def _logged_in(api: Api, *devices: Device) -> None:
    for device in devices:
        assert (await login(api, device)).status == 200


async def test_an_owner_wraps_for_members_and_each_device_takes_only_its_own(
    relay: RelayUnderTest,
) -> None:
    api = relay.api
    owner, editor, viewer = new_device(), new_device(), new_device()
    editor_tablet = new_device(editor.user, "tablet")
    await _logged_in(api, owner, editor, viewer, editor_tablet)
    share, ring = await _keyed_share(api, owner)
    await add_member(api, share, editor, Role.EDITOR)
    await add_member(api, share, viewer, Role.VIEWER)
    ring = ring.rotated()
    entry = make_key_epoch(share.chain, owner.certified, ring.epoch(1).key_hash, NOW_MS)
    assert (await extend(api, share, entry, owner)).status == 200

    listed = await api.call("GET", f"{share.path}/devices", token=owner.token)
    assert listed.status == 200, listed.body
    certificates = [DeviceCertificate.decode(d["certificate"]) for d in listed.body["devices"]]
    assert {c.device_id for c in certificates} == {
        d.device_id for d in (owner, editor, viewer, editor_tablet)
    }
    assert all(d["wrapped_epoch"] is None for d in listed.body["devices"])

    others = [c for c in certificates if c.device_id != owner.device_id]
    wraps = [wrap_keys(ring, owner.certified.identity, c) for c in others]
    assert await _put(api, share, owner, *wraps) == (200, {"stored": 3})
    listed = await api.call("GET", f"{share.path}/devices", token=owner.token)
    wrapped = {
        DeviceCertificate.decode(d["certificate"]).device_id: d["wrapped_epoch"]
        for d in listed.body["devices"]
    }
    assert wrapped == {owner.device_id: None, **{c.device_id: 1 for c in others}}

    raw_chain = await api.call("GET", f"{share.path}/chain", token=editor_tablet.token)
    chain = MembershipChain(ChainEntry.decode(raw_chain.body["entries"][0]))
    for raw in raw_chain.body["entries"][1:]:
        chain.append(ChainEntry.decode(raw))
    for device in (editor, viewer, editor_tablet):
        mine = await api.call("GET", f"{share.path}/keys", token=device.token)
        assert mine.status == 200, mine.body
        assert len(mine.body["wraps"]) == 1
        item = mine.body["wraps"][0]
        wrap = EpochKeyWrap.decode(item["wrap"])
        assert wrap.recipient == device.device_id
        opened = open_keys(
            wrap,
            device.certified.identity,
            DeviceCertificate.decode(item["sender"]),
            chain,
            need_epoch=1,
        )
        assert opened.epoch_keys == ring.epoch_keys
    own = await api.call("GET", f"{share.path}/keys", token=owner.token)
    assert own.body == {"wraps": []}

    # A newer wrap for the same epoch replaces the old one.
    again = wrap_keys(ring, owner.certified.identity, others[0])
    assert await _put(api, share, owner, again) == (200, {"stored": 1})
    recipient = next(d for d in (editor, viewer, editor_tablet) if d.device_id == again.recipient)
    mine = await api.call("GET", f"{share.path}/keys", token=recipient.token)
    assert [EpochKeyWrap.decode(i["wrap"]) for i in mine.body["wraps"]] == [again]


async def test_wraps_the_relay_can_tell_are_wrong_are_refused(relay: RelayUnderTest) -> None:
    api = relay.api
    owner, editor, outsider, removed = (new_device() for _ in range(4))
    owner_phone = new_device(owner.user, "phone")
    await _logged_in(api, owner, editor, outsider, removed, owner_phone)
    share, ring = await _keyed_share(api, owner)
    await add_member(api, share, editor, Role.EDITOR)
    await add_member(api, share, removed, Role.EDITOR)
    await remove_member(api, share, removed, cutoff=0)
    for_editor = wrap_keys(ring, owner.certified.identity, editor.certified.certificate)

    status, body = await _put(
        api, share, editor, wrap_keys(ring, editor.certified.identity, owner.certified.certificate)
    )
    assert (status, body["error"]) == (403, "role")
    status, body = await _put(api, share, owner_phone, for_editor)
    assert (status, body["error"]) == (403, "forbidden")
    assert "calling device" in body["message"]
    for stranger in (outsider, removed):
        wrap = wrap_keys(ring, owner.certified.identity, stranger.certified.certificate)
        status, body = await _put(api, share, owner, wrap)
        assert (status, body["error"]) == (403, "forbidden"), body
        assert body["device"] == stranger.hex
    ahead = wrap_keys(ring.rotated(), owner.certified.identity, editor.certified.certificate)
    status, body = await _put(api, share, owner, ahead)
    assert (status, body["error"]) == (400, "bad_request")
    assert "epoch 1" in body["message"]
    elsewhere = dataclasses.replace(for_editor, share=os.urandom(16))
    status, body = await _put(api, share, owner, elsewhere)
    assert (status, body["error"]) == (400, "bad_request")
    answer = await api.call(
        "POST", f"{share.path}/keys", {"wraps": [b"not a wrap"]}, token=owner.token
    )
    assert (answer.status, answer.body["error"]) == (400, "malformed")
    answer = await api.call("POST", f"{share.path}/keys", {"wraps": "x"}, token=owner.token)
    assert (answer.status, answer.body["error"]) == (400, "bad_request")
    status, body = await _put(api, share, owner, *[for_editor] * 257)
    assert (status, body["error"]) == (413, "too_large")
    # Nothing refused was kept: a batch is all or nothing.
    mixed = wrap_keys(ring, owner.certified.identity, outsider.certified.certificate)
    status, _ = await _put(api, share, owner, for_editor, mixed)
    assert status == 403
    mine = await api.call("GET", f"{share.path}/keys", token=editor.token)
    assert mine.body == {"wraps": []}
    # A revoked device drops out of the member list and may be sent nothing.
    revocation = editor.user.revoke(editor.device_id, int(time.time() * 1000))
    answer = await api.call(
        "POST", "/v1/devices/revoke", {"revocation": revocation.encode()}, token=editor.token
    )
    assert answer.status == 200
    listed = await api.call("GET", f"{share.path}/devices", token=owner.token)
    ids = {DeviceCertificate.decode(d["certificate"]).device_id for d in listed.body["devices"]}
    assert ids == {owner.device_id, owner_phone.device_id}
    status, body = await _put(api, share, owner, for_editor)
    assert (status, body["error"]) == (403, "forbidden")


async def test_user_wraps_go_only_to_member_users_and_only_their_devices_take_them(
    relay: RelayUnderTest,
) -> None:
    """A wrap addressed to a member user (what `drift recover` reads shares back with)."""
    api = relay.api
    owner, editor, stranger = new_device(), new_device(), new_device()
    editor_tablet = new_device(editor.user, "tablet")
    await _logged_in(api, owner, editor, stranger, editor_tablet)
    share, ring = await _keyed_share(api, owner)
    await add_member(api, share, editor, Role.EDITOR)

    to_editor = wrap_keys_for_user(ring, owner.certified.identity, editor.user.public_key)
    assert await _put(api, share, owner, to_editor) == (200, {"stored": 1})
    # Not a member's user: refused. Not an owner: refused.
    to_stranger = wrap_keys_for_user(ring, owner.certified.identity, stranger.user.public_key)
    status, body = await _put(api, share, owner, to_stranger)
    assert (status, body["error"]) == (403, "forbidden"), body
    by_editor = wrap_keys_for_user(ring, editor.certified.identity, editor.user.public_key)
    status, body = await _put(api, share, editor, by_editor)
    assert (status, body["error"]) == (403, "role"), body

    # Every device of the editor's user takes it (and opens it with the user key); the owner's
    # device, of another user, does not see it.
    for device in (editor, editor_tablet):
        mine = await api.call("GET", f"{share.path}/keys", token=device.token)
        assert mine.status == 200, mine.body
        [item] = mine.body["wraps"]
        opened = open_user_keys(
            EpochKeyWrap.decode(item["wrap"]),
            device.user,
            DeviceCertificate.decode(item["sender"]),
            share.chain,
            need_epoch=0,
        )
        assert opened.epoch_keys == ring.epoch_keys
    theirs = await api.call("GET", f"{share.path}/keys", token=owner.token)
    assert theirs.body["wraps"] == []

    # Once removed, the user gets no wrap for the new epoch.
    await remove_member(api, share, editor, cutoff=0)
    ring = ring.rotated()
    entry = make_key_epoch(share.chain, owner.certified, ring.epoch(1).key_hash, NOW_MS)
    assert (await extend(api, share, entry, owner)).status == 200
    late = wrap_keys_for_user(ring, owner.certified.identity, editor.user.public_key)
    status, body = await _put(api, share, owner, late)
    assert (status, body["error"]) == (403, "forbidden"), body


def test_a_forged_user_wrap_is_refused() -> None:
    """A user wrap is checked like a device's: made by an owner's device, keys in the chain."""
    owner, editor = new_device(), new_device()
    share_id = os.urandom(16)
    ring = KeyRing.create(share_id)
    chain = MembershipChain(make_genesis(owner.certified, share_id, ring.epoch(0).key_hash, NOW_MS))
    chain.append(make_add_user(chain, owner.certified, editor.user.public_key, Role.EDITOR, NOW_MS))
    good = wrap_keys_for_user(ring, owner.certified.identity, editor.user.public_key)
    assert open_user_keys(good, editor.user, owner.certified.certificate, chain).epoch_keys == (
        ring.epoch_keys
    )
    # Made by a member who is no owner.
    forged = wrap_keys_for_user(ring, editor.certified.identity, editor.user.public_key)
    with pytest.raises(Forbidden):
        open_user_keys(forged, editor.user, editor.certified.certificate, chain)
    # Keys that are not the chain's, from the owner's device itself.
    fake = wrap_keys_for_user(
        KeyRing.create(share_id), owner.certified.identity, editor.user.public_key
    )
    with pytest.raises(BadKey):
        open_user_keys(fake, editor.user, owner.certified.certificate, chain)
    # Addressed to another user, or tampered with.
    with pytest.raises(BadKey, match="another user"):
        open_user_keys(good, owner.user, owner.certified.certificate, chain)
    tampered = dataclasses.replace(good, box=bytes([good.box[0] ^ 1]) + good.box[1:])
    with pytest.raises(BadKey, match="does not open"):
        open_user_keys(tampered, editor.user, owner.certified.certificate, chain)
