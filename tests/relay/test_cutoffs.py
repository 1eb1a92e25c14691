"""Entries that end a device's writing are refused when the log already holds an envelope of that
device past the entry's cutoff (``stale_cutoffs``), and leave the chain and members unchanged.

The owner's device reads the relay's vector before it signs a removal; the removed user's device
is a member until the entry lands and may append meanwhile. Accepting the entry then would make
every replica refuse an envelope the relay keeps serving.
"""

from __future__ import annotations

from protocol.chain import ChainEntry, Role, make_change_role, make_remove_user, make_revoke_device

from .conftest import RelayUnderTest
from .helpers import NOW_MS, Api, Device, Share, add_member, create_share, extend, login, new_device
from .helpers import publish as publish_envelopes


async def _publish(api: Api, share: Share, device: Device, count: int) -> None:
    for _ in range(count):
        env = device.next_envelope(share.share_id, share.key, height=share.chain.height)
        answer = await publish_envelopes(api, share, device, env)
        assert answer.status == 200, answer.body


async def _snapshot(api: Api, share: Share) -> tuple[int, list[tuple[str, str]]]:
    """The relay's chain height and (member device, role) as members see it."""
    chain = await api.call("GET", f"{share.path}/chain?from=0", token=share.owner.token)
    assert chain.status == 200, chain.body
    shares = await api.call("GET", "/v1/shares", token=share.owner.token)
    roles = sorted((s["share"], s["role"]) for s in shares.body["shares"])
    return len(chain.body["entries"]) - 1, roles


async def _role_of(api: Api, share: Share, device: Device) -> str | None:
    answer = await api.call("GET", "/v1/shares", token=device.token)
    return next((s["role"] for s in answer.body["shares"] if s["share"] == share.hex), None)


async def _refused(api: Api, share: Share, entry: ChainEntry, device: Device, have: int) -> None:
    before = await _snapshot(api, share)
    answer = await extend(api, share, entry, share.owner)
    assert (answer.status, answer.code) == (409, "stale_cutoffs"), answer.body
    assert answer.body["device"] == device.hex
    assert answer.body["have"] == have
    assert answer.body["cutoff"] == entry.cutoffs.get(device.device_id, 0)
    assert "again" in answer.body["message"]
    assert await _snapshot(api, share) == before


async def test_a_removal_below_a_held_counter_is_refused_and_one_at_it_accepted(
    relay: RelayUnderTest,
) -> None:
    api = relay.api
    owner, editor = new_device(), new_device()
    for device in (owner, editor):
        assert (await login(api, device)).status == 200
    share = await create_share(api, owner)
    await add_member(api, share, editor, Role.EDITOR)
    await _publish(api, share, editor, 3)
    height = share.chain.height

    key = editor.user.public_key
    stale = make_remove_user(share.chain, owner.certified, key, {editor.device_id: 2}, NOW_MS)
    await _refused(api, share, stale, editor, have=3)
    assert await _role_of(api, share, editor) == Role.EDITOR.value

    exact = make_remove_user(share.chain, owner.certified, key, {editor.device_id: 3}, NOW_MS)
    answer = await extend(api, share, exact, owner)
    assert answer.status == 200, answer.body
    assert answer.body["height"] == height + 1
    assert await _role_of(api, share, editor) is None


async def test_a_device_the_removal_leaves_out_has_cutoff_zero(relay: RelayUnderTest) -> None:
    api = relay.api
    owner, laptop = new_device(), new_device()
    tablet = new_device(laptop.user, "tablet")
    for device in (owner, laptop, tablet):
        assert (await login(api, device)).status == 200
    share = await create_share(api, owner)
    await add_member(api, share, laptop, Role.EDITOR)
    await _publish(api, share, laptop, 1)
    await _publish(api, share, tablet, 2)

    key = laptop.user.public_key
    only_laptop = make_remove_user(share.chain, owner.certified, key, {laptop.device_id: 1}, NOW_MS)
    await _refused(api, share, only_laptop, tablet, have=2)
    both = make_remove_user(
        share.chain, owner.certified, key, {laptop.device_id: 1, tablet.device_id: 2}, NOW_MS
    )
    assert (await extend(api, share, both, owner)).status == 200


async def test_a_demotion_and_a_revocation_are_held_to_the_log_too(relay: RelayUnderTest) -> None:
    api = relay.api
    owner, editor, other = new_device(), new_device(), new_device()
    for device in (owner, editor, other):
        assert (await login(api, device)).status == 200
    share = await create_share(api, owner)
    await add_member(api, share, editor, Role.EDITOR)
    await add_member(api, share, other, Role.EDITOR)
    await _publish(api, share, editor, 2)
    await _publish(api, share, other, 2)

    key = editor.user.public_key
    demote = make_change_role(
        share.chain, owner.certified, key, Role.VIEWER, NOW_MS, cutoffs={editor.device_id: 1}
    )
    await _refused(api, share, demote, editor, have=2)
    demote = make_change_role(
        share.chain, owner.certified, key, Role.VIEWER, NOW_MS, cutoffs={editor.device_id: 2}
    )
    assert (await extend(api, share, demote, owner)).status == 200

    revocation = other.user.revoke(other.device_id, NOW_MS)
    stale = make_revoke_device(share.chain, owner.certified, revocation, 1, NOW_MS)
    await _refused(api, share, stale, other, have=2)
    exact = make_revoke_device(share.chain, owner.certified, revocation, 2, NOW_MS)
    assert (await extend(api, share, exact, owner)).status == 200
