"""Key schedule: derivations, wrapping for member devices, checks against the chain, LAN tokens."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.chain import (
    Role,
    make_change_role,
    make_key_epoch,
    make_remove_user,
    make_revoke_device,
)
from protocol.errors import BadKey, DecodeError, Forbidden, Revoked, WrongShare
from protocol.keyschedule import (
    HOUR_MS,
    EpochKeyWrap,
    KeyRing,
    epoch_key_hash,
    kdf,
    lan_token,
    open_keys,
    wrap_keys,
)
from tests.protocol.conftest import certified


def test_all_keys_are_distinct_and_stable_across_rotation(world) -> None:
    ring = world.ring
    rotated = ring.rotated(world.rand)
    assert rotated.share_keys.chunking_key == ring.share_keys.chunking_key
    assert rotated.share_keys.chunk_id_key == ring.share_keys.chunk_id_key
    e0, e1 = rotated.epoch(0), rotated.epoch(1)
    keys = {
        ring.share_keys.chunking_key,
        ring.share_keys.chunk_id_key,
        ring.share_keys.lan_discovery_key,
        e0.sealing_key,
        e0.metadata_key,
        e1.sealing_key,
        e1.metadata_key,
        e0.epoch_key,
        e1.epoch_key,
    }
    assert len(keys) == 9
    assert all(len(k) == 32 for k in keys)
    assert e0.key_hash == epoch_key_hash(world.share_id, 0, e0.epoch_key)
    assert rotated.epoch() == rotated.epoch(1)
    with pytest.raises(BadKey):
        ring.epoch(1)


def test_kdf_is_domain_separated_by_label_and_context() -> None:
    parent = bytes(range(32))
    assert kdf(parent, "sealing", b"a") != kdf(parent, "metadata", b"a")
    assert kdf(parent, "sealing", b"a") != kdf(parent, "sealing", b"b")
    assert kdf(parent, "sealing", b"a") == kdf(parent, "sealing", b"a")


def test_wrap_gives_a_member_the_whole_history(world, now_ms) -> None:
    ring = world.ring.rotated(world.rand).rotated(world.rand)
    for epoch in (1, 2):
        world.chain.append(
            make_key_epoch(world.chain, world.owner_laptop, ring.epoch(epoch).key_hash, now_ms)
        )
    wrap = wrap_keys(ring, world.owner_laptop.identity, world.editor_phone.certificate, world.rand)
    decoded = EpochKeyWrap.decode(wrap.encode())
    opened = open_keys(
        decoded, world.editor_phone.identity, world.owner_laptop.certificate, world.chain
    )
    assert opened.epoch_keys == ring.epoch_keys
    assert opened.epoch(0).metadata_key == world.ring.epoch(0).metadata_key


def test_key_whose_hash_is_not_in_the_chain_is_refused(world) -> None:
    rogue = KeyRing(world.share_id, (world.rand(32),))
    wrap = wrap_keys(rogue, world.owner_laptop.identity, world.editor_phone.certificate)
    with pytest.raises(BadKey, match="does not match the hash"):
        open_keys(wrap, world.editor_phone.identity, world.owner_laptop.certificate, world.chain)
    ahead = world.ring.rotated(world.rand)
    wrap = wrap_keys(ahead, world.owner_laptop.identity, world.editor_phone.certificate)
    with pytest.raises(BadKey, match="not in the chain"):
        open_keys(wrap, world.editor_phone.identity, world.owner_laptop.certificate, world.chain)


def test_wrap_for_someone_else_or_from_someone_else_is_refused(world) -> None:
    wrap = wrap_keys(world.ring, world.owner_laptop.identity, world.editor_phone.certificate)
    with pytest.raises(BadKey, match="addressed to another device"):
        open_keys(wrap, world.viewer_tablet.identity, world.owner_laptop.certificate, world.chain)
    with pytest.raises(BadKey, match="another device"):
        open_keys(wrap, world.editor_phone.identity, world.outsider_pc.certificate, world.chain)
    relabelled = dataclasses.replace(wrap, recipient=world.viewer_tablet.device_id)
    with pytest.raises(BadKey, match="does not open"):
        open_keys(
            relabelled, world.viewer_tablet.identity, world.owner_laptop.certificate, world.chain
        )
    other_share = dataclasses.replace(wrap, share=bytes(16))
    with pytest.raises(WrongShare):
        open_keys(
            other_share, world.editor_phone.identity, world.owner_laptop.certificate, world.chain
        )
    with pytest.raises(DecodeError):
        EpochKeyWrap.decode(wrap.encode()[:-1])


def test_lan_token_rotates_hourly(world, now_ms) -> None:
    key = world.ring.share_keys.lan_discovery_key
    hour_start = now_ms - now_ms % HOUR_MS
    assert lan_token(key, hour_start) == lan_token(key, hour_start + HOUR_MS - 1)
    assert lan_token(key, hour_start) != lan_token(key, hour_start + HOUR_MS)
    assert len(lan_token(key, now_ms)) == 8
    assert lan_token(key, now_ms) != lan_token(bytes(32), now_ms)


def _rotate(world, now_ms: int) -> KeyRing:
    ring = world.ring.rotated(world.rand)
    world.chain.append(
        make_key_epoch(world.chain, world.owner_laptop, ring.epoch(1).key_hash, now_ms)
    )
    return ring


def test_only_an_owners_device_may_hand_out_keys(world, now_ms) -> None:
    ring = _rotate(world, now_ms)
    # The editor holds the right keys, yet a wrap from it is refused: keys come from owners.
    from_editor = wrap_keys(ring, world.editor_phone.identity, world.viewer_tablet.certificate)
    with pytest.raises(Forbidden, match="not made by a device of an owner"):
        open_keys(
            from_editor, world.viewer_tablet.identity, world.editor_phone.certificate, world.chain
        )
    from_outsider = wrap_keys(ring, world.outsider_pc.identity, world.viewer_tablet.certificate)
    with pytest.raises(Forbidden):
        open_keys(
            from_outsider, world.viewer_tablet.identity, world.outsider_pc.certificate, world.chain
        )


def test_a_removed_owner_or_a_revoked_owner_device_may_not_hand_out_keys(world, now_ms) -> None:
    chain = world.chain
    chain.append(
        make_change_role(chain, world.owner_laptop, world.editor.public_key, Role.OWNER, now_ms)
    )
    chain.append(make_remove_user(chain, world.owner_laptop, world.editor.public_key, {}, now_ms))
    ring = _rotate(world, now_ms)
    # Promoted, then removed before the new epoch began: its wrap of the new keys is refused.
    stale = wrap_keys(ring, world.editor_phone.identity, world.viewer_tablet.certificate)
    with pytest.raises(Forbidden):
        open_keys(stale, world.viewer_tablet.identity, world.editor_phone.certificate, chain)
    revocation = world.owner.revoke(world.owner_laptop.device_id, now_ms)
    second = certified(world.owner, world.rand, "desktop")
    chain.append(make_revoke_device(chain, second, revocation, 0, now_ms))
    wrap = wrap_keys(ring, world.owner_laptop.identity, world.viewer_tablet.certificate)
    with pytest.raises(Revoked):
        open_keys(wrap, world.viewer_tablet.identity, world.owner_laptop.certificate, chain)
    fresh = wrap_keys(ring, second.identity, world.viewer_tablet.certificate)
    assert open_keys(fresh, world.viewer_tablet.identity, second.certificate, chain) == ring


def test_an_old_wrap_sent_again_is_refused_when_a_newer_epoch_is_needed(world, now_ms) -> None:
    old = wrap_keys(world.ring, world.owner_laptop.identity, world.editor_phone.certificate)
    ring = _rotate(world, now_ms)
    with pytest.raises(BadKey, match="not the needed epoch 1"):
        open_keys(
            old,
            world.editor_phone.identity,
            world.owner_laptop.certificate,
            world.chain,
            need_epoch=1,
        )
    new = wrap_keys(ring, world.owner_laptop.identity, world.editor_phone.certificate)
    opened = open_keys(
        new, world.editor_phone.identity, world.owner_laptop.certificate, world.chain, need_epoch=1
    )
    assert opened.latest_epoch == 1


def test_a_wrap_relabelled_to_a_later_epoch_does_not_pass(world, now_ms) -> None:
    old = wrap_keys(world.ring, world.owner_laptop.identity, world.editor_phone.certificate)
    _rotate(world, now_ms)
    relabelled = dataclasses.replace(old, epoch=1)
    with pytest.raises(BadKey, match="do not match its label"):
        open_keys(
            relabelled,
            world.editor_phone.identity,
            world.owner_laptop.certificate,
            world.chain,
            need_epoch=1,
        )


def test_a_removal_or_revocation_makes_a_rotation_due_until_the_next_epoch(world, now_ms) -> None:
    chain = world.chain
    assert not chain.rotation_due()
    chain.append(
        make_change_role(chain, world.owner_laptop, world.viewer.public_key, Role.EDITOR, now_ms)
    )
    assert not chain.rotation_due()  # every role reads: a new role takes nothing away
    chain.append(make_remove_user(chain, world.owner_laptop, world.viewer.public_key, {}, now_ms))
    assert chain.rotation_due()
    _rotate(world, now_ms)
    assert not chain.rotation_due()
    assert chain.epoch_start(1) == chain.height
    revocation = world.editor.revoke(world.editor_phone.device_id, now_ms)
    chain.append(make_revoke_device(chain, world.owner_laptop, revocation, 0, now_ms))
    assert chain.rotation_due()
