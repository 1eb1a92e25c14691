"""Key schedule: derivations, wrapping for member devices, checks against the chain, LAN tokens."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.chain import make_key_epoch
from protocol.errors import BadKey, DecodeError, WrongShare
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
