"""Membership chain: building, verifying offline, ordering, and every refusal."""

from __future__ import annotations

import dataclasses

import pytest
from nacl.signing import SigningKey

from protocol.chain import (
    ChainEntry,
    MembershipChain,
    Role,
    make_add_user,
    make_change_role,
    make_genesis,
    make_key_epoch,
    make_remove_user,
    make_revoke_device,
    verify_chain,
)
from protocol.errors import (
    BadCertificate,
    BadSignature,
    BrokenHashChain,
    CounterGap,
    DecodeError,
    Forbidden,
    Fork,
    InvalidChain,
    Revoked,
    UnknownHeight,
    WrongShare,
)
from protocol.keys import CertifiedDevice
from protocol.keyschedule import new_share_id
from protocol.signing import Purpose, sign


def _resign(
    entry: ChainEntry, key: SigningKey, purpose: Purpose = Purpose.CHAIN_ENTRY
) -> ChainEntry:
    return dataclasses.replace(entry, sig=sign(key, purpose, entry.signed_bytes()))


def test_world_chain_has_roles_and_epoch(world) -> None:
    chain = world.chain
    assert chain.height == 2
    assert chain.role_at(world.owner.user_id) is Role.OWNER
    assert chain.role_at(world.editor.user_id) is Role.EDITOR
    assert chain.role_at(world.viewer.user_id) is Role.VIEWER
    assert chain.role_at(world.editor.user_id, 1) is Role.EDITOR
    assert chain.role_at(world.viewer.user_id, 1) is None
    assert chain.role_at(world.outsider.user_id) is None
    assert chain.epoch_at() == 0
    assert chain.key_hash(0) == world.ring.epoch(0).key_hash
    assert chain.owner_ids() == {world.owner.user_id}


def test_every_entry_round_trips_and_the_chain_verifies_offline(world, now_ms) -> None:
    chain, laptop = world.chain, world.owner_laptop
    ring = world.ring.rotated(world.rand)
    revocation = world.editor.revoke(world.editor_phone.device_id, now_ms)
    chain.append(make_revoke_device(chain, laptop, revocation, 4, now_ms))
    chain.append(make_change_role(chain, laptop, world.viewer.public_key, Role.EDITOR, now_ms))
    chain.append(
        make_remove_user(
            chain, laptop, world.editor.public_key, {world.editor_phone.device_id: 4}, now_ms
        )
    )
    chain.append(make_key_epoch(chain, laptop, ring.epoch(1).key_hash, now_ms))
    decoded = [ChainEntry.decode(e.encode()) for e in chain.entries]
    assert decoded == chain.entries
    again = verify_chain(decoded, world.share_id)
    assert again.head_hash == chain.head_hash
    assert again.height == 6
    assert again.epoch_at() == 1
    assert again.epoch_at(5) == 0
    assert again.role_at(world.editor.user_id) is None
    assert again.role_at(world.viewer.user_id) is Role.EDITOR
    assert again.is_revoked(world.editor_phone.device_id)


def test_appending_the_same_entry_twice_is_idempotent(world, now_ms) -> None:
    entry = make_add_user(
        world.chain, world.owner_laptop, world.outsider.public_key, Role.VIEWER, now_ms
    )
    assert world.chain.append(entry) is True
    assert world.chain.append(entry) is False
    assert world.chain.height == 3


def test_forked_chain_is_refused(world, now_ms) -> None:
    chain = world.chain
    a = make_add_user(chain, world.owner_laptop, world.outsider.public_key, Role.VIEWER, now_ms)
    b = make_add_user(chain, world.owner_laptop, world.outsider.public_key, Role.EDITOR, now_ms)
    chain.append(a)
    with pytest.raises(Fork) as info:
        chain.append(b)
    assert info.value.code == "fork"
    with pytest.raises(Fork):
        verify_chain([*chain.entries, chain.entries[-1]])


def test_entry_not_signed_by_an_owner_is_refused(world, now_ms) -> None:
    entry = make_add_user(
        world.chain, world.editor_phone, world.outsider.public_key, Role.OWNER, now_ms
    )
    with pytest.raises(Forbidden, match="not signed by an owner") as info:
        world.chain.append(entry)
    assert info.value.code == "forbidden"


def test_forged_entry_signature_is_refused(world, now_ms) -> None:
    entry = make_add_user(
        world.chain, world.owner_laptop, world.outsider.public_key, Role.VIEWER, now_ms
    )
    forged = dataclasses.replace(entry, role=Role.OWNER.value)
    with pytest.raises(BadSignature):
        world.chain.append(forged)
    # Signed by the outsider's key but carrying the owner's certificate.
    stolen = _resign(forged, world.outsider_pc.identity.signing_key)
    with pytest.raises(BadSignature):
        world.chain.append(stolen)


def test_entry_signed_for_another_purpose_is_refused(world, now_ms) -> None:
    entry = make_add_user(
        world.chain, world.owner_laptop, world.outsider.public_key, Role.VIEWER, now_ms
    )
    wrong = _resign(entry, world.owner_laptop.identity.signing_key, Purpose.ENVELOPE)
    with pytest.raises(BadSignature):
        world.chain.append(wrong)


def test_broken_hash_link_and_gap_are_refused(world, now_ms) -> None:
    entry = make_add_user(
        world.chain, world.owner_laptop, world.outsider.public_key, Role.VIEWER, now_ms
    )
    key = world.owner_laptop.identity.signing_key
    broken = _resign(dataclasses.replace(entry, prev=bytes(32)), key)
    with pytest.raises(BrokenHashChain):
        world.chain.append(broken)
    gapped = _resign(dataclasses.replace(entry, height=entry.height + 1), key)
    with pytest.raises(CounterGap):
        world.chain.append(gapped)


def test_entry_for_another_share_is_refused(world, now_ms) -> None:
    entry = make_add_user(
        world.chain, world.owner_laptop, world.outsider.public_key, Role.VIEWER, now_ms
    )
    other = _resign(
        dataclasses.replace(entry, share=new_share_id(world.rand)),
        world.owner_laptop.identity.signing_key,
    )
    with pytest.raises(WrongShare):
        world.chain.append(other)
    with pytest.raises(WrongShare):
        verify_chain(world.chain.entries, new_share_id(world.rand))


def test_genesis_must_be_signed_by_its_owner_with_a_valid_certificate(world, now_ms) -> None:
    genesis = make_genesis(world.owner_laptop, world.share_id, bytes(32), now_ms)
    stolen = _resign(
        dataclasses.replace(genesis, user_key=world.outsider.public_key),
        world.owner_laptop.identity.signing_key,
    )
    with pytest.raises(InvalidChain, match="signed by a device of its owner"):
        MembershipChain(stolen)
    bad_cert = dataclasses.replace(world.owner_laptop.certificate, name="renamed")
    with pytest.raises(BadCertificate):
        MembershipChain(dataclasses.replace(genesis, signer=bad_cert))
    with pytest.raises(InvalidChain):
        verify_chain([])


def test_rules_of_membership(world, now_ms) -> None:
    chain, laptop = world.chain, world.owner_laptop
    with pytest.raises(InvalidChain, match="already a member"):
        chain.append(make_add_user(chain, laptop, world.editor.public_key, Role.VIEWER, now_ms))
    with pytest.raises(InvalidChain, match="not a member"):
        chain.append(make_remove_user(chain, laptop, world.outsider.public_key, {}, now_ms))
    with pytest.raises(InvalidChain, match="keep at least one owner"):
        chain.append(make_remove_user(chain, laptop, world.owner.public_key, {}, now_ms))
    with pytest.raises(InvalidChain, match="already editor"):
        chain.append(make_change_role(chain, laptop, world.editor.public_key, Role.EDITOR, now_ms))
    with pytest.raises(InvalidChain, match="only when a writer loses"):
        chain.append(
            make_change_role(
                chain, laptop, world.viewer.public_key, Role.EDITOR, now_ms, {bytes(32): 1}
            )
        )
    bad_epoch = make_key_epoch(chain, laptop, bytes(32), now_ms)
    with pytest.raises(InvalidChain, match="does not follow"):
        chain.append(_resign(dataclasses.replace(bad_epoch, epoch=5), laptop.identity.signing_key))
    assert chain.height == 2


def test_members_may_revoke_their_own_devices_but_not_others(world, now_ms) -> None:
    chain = world.chain
    second = world.editor.certify(world.outsider_pc.identity.public_key, "tablet", now_ms)
    editor_tablet = CertifiedDevice(world.outsider_pc.identity, second)
    own = world.editor.revoke(world.editor_phone.device_id, now_ms)
    chain.append(make_revoke_device(chain, editor_tablet, own, 3, now_ms))
    others = world.owner.revoke(world.owner_laptop.device_id, now_ms)
    with pytest.raises(Forbidden):
        chain.append(make_revoke_device(chain, editor_tablet, others, 0, now_ms))
    # The revoked device can no longer sign entries, even as an owner would.
    with pytest.raises(Revoked):
        chain.append(make_revoke_device(chain, world.editor_phone, own, 0, now_ms))
    with pytest.raises(InvalidChain, match="already revoked"):
        chain.append(make_revoke_device(chain, world.owner_laptop, own, 3, now_ms))


def test_revocation_must_be_signed_by_the_devices_user(world, now_ms) -> None:
    forged = dataclasses.replace(
        world.editor.revoke(world.editor_phone.device_id, now_ms), revoked_ms=now_ms + 1
    )
    with pytest.raises(InvalidChain, match="does not verify"):
        world.chain.append(make_revoke_device(world.chain, world.owner_laptop, forged, 0, now_ms))


def test_queries_beyond_the_head_ask_for_the_chain(world) -> None:
    with pytest.raises(UnknownHeight) as info:
        world.chain.role_at(world.owner.user_id, 99)
    assert info.value.code == "unknown_height"
    with pytest.raises(UnknownHeight):
        world.chain.key_hash(1)


def test_malformed_entry_shape_is_refused(world, now_ms) -> None:
    entry = make_key_epoch(world.chain, world.owner_laptop, bytes(32), now_ms)
    bad = _resign(
        dataclasses.replace(entry, user_key=world.outsider.public_key),
        world.owner_laptop.identity.signing_key,
    )
    with pytest.raises(InvalidChain, match="must not carry user_key"):
        world.chain.append(bad)
    with pytest.raises(DecodeError):
        ChainEntry.decode(entry.encode()[:-3])


def test_the_last_valid_counter_of_a_device_whose_writing_ended(world, now_ms) -> None:
    chain, laptop = world.chain, world.owner_laptop
    phone, editor = world.editor_phone.device_id, world.editor.user_id
    assert chain.last_valid_counter(editor, phone) is None  # an editor writes on
    chain.append(make_remove_user(chain, laptop, world.editor.public_key, {phone: 4}, now_ms))
    assert chain.last_valid_counter(editor, phone) == 4
    assert chain.last_valid_counter(editor, bytes(32)) == 0  # a device the cutoffs leave out
    chain.append(make_add_user(chain, laptop, world.editor.public_key, Role.EDITOR, now_ms))
    assert chain.last_valid_counter(editor, phone) is None  # an editor again
    revocation = world.editor.revoke(phone, now_ms)
    chain.append(make_revoke_device(chain, laptop, revocation, 7, now_ms))
    assert chain.last_valid_counter(editor, phone) == 7
