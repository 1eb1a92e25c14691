"""Envelopes: seal, verify (signature, authority, continuity), open, and every refusal."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from protocol.chain import (
    Role,
    make_change_role,
    make_key_epoch,
    make_remove_user,
    make_revoke_device,
)
from protocol.envelope import (
    Envelope,
    EnvelopeTip,
    check_continuity,
    check_envelope_authority,
    open_envelope,
    same_position,
    verify_envelope,
    verify_envelope_signature,
)
from protocol.errors import (
    BadCertificate,
    BadKey,
    BadSignature,
    BrokenHashChain,
    CounterGap,
    CounterReplay,
    DecodeError,
    EncodeError,
    Forbidden,
    Fork,
    PastCutoff,
    Revoked,
    UnknownHeight,
    UnsupportedVersion,
    WrongEpoch,
    WrongShare,
)
from protocol.keyschedule import new_share_id
from protocol.signing import Purpose, sign
from protocol.vv import VersionVector


def _resign(envelope: Envelope, device, purpose: Purpose = Purpose.ENVELOPE) -> Envelope:
    key = device.identity.signing_key
    return dataclasses.replace(envelope, sig=sign(key, purpose, envelope.signed_bytes()))


def test_seal_verify_open_round_trip(world) -> None:
    block = bytes(range(32))
    env = world.envelope(world.editor_phone, update=b"hello crdt", blocks=(block, block))
    decoded = Envelope.decode(env.encode())
    assert decoded == env
    assert decoded.envelope_hash == env.envelope_hash
    assert decoded.header.blocks == (block,)
    verify_envelope(decoded, world.editor_phone.certificate, world.chain, None)
    assert open_envelope(decoded, world.ring.epoch(0).metadata_key) == b"hello crdt"


def test_a_chain_of_envelopes_continues(world) -> None:
    first = world.envelope(world.owner_laptop, 1)
    second = world.envelope(world.owner_laptop, 2, first)
    third = world.envelope(world.owner_laptop, 3, second)
    cert = world.owner_laptop.certificate
    verify_envelope(first, cert, world.chain, None)
    verify_envelope(second, cert, world.chain, first.tip)
    verify_envelope(third, cert, world.chain, second.tip)
    assert third.header.seen == VersionVector({world.owner_laptop.device_id: 2})


def test_forged_signature_and_modified_header_are_refused(world) -> None:
    env = world.envelope(world.editor_phone)
    key = world.editor_phone.identity.public_key
    modified = dataclasses.replace(env, header=dataclasses.replace(env.header, counter=2))
    with pytest.raises(BadSignature) as info:
        verify_envelope_signature(modified, key)
    assert info.value.code == "bad_signature"
    tampered = dataclasses.replace(env, payload=env.payload[:-1] + bytes([env.payload[-1] ^ 1]))
    with pytest.raises(BadSignature):
        verify_envelope_signature(tampered, key)
    with pytest.raises(BadSignature):
        verify_envelope_signature(dataclasses.replace(env, sig=bytes(64)), key)


def test_signature_by_another_device_is_refused(world) -> None:
    env = world.envelope(world.editor_phone)
    with pytest.raises(BadCertificate, match="another device"):
        verify_envelope_signature(env, world.owner_laptop.identity.public_key)
    forged = _resign(env, world.owner_laptop)
    with pytest.raises(BadSignature):
        verify_envelope_signature(forged, world.editor_phone.identity.public_key)


def test_signature_made_for_another_purpose_is_refused(world) -> None:
    env = world.envelope(world.editor_phone)
    for purpose in (Purpose.AUTH, Purpose.CHAIN_ENTRY, Purpose.DEVICE_CERTIFICATE):
        wrong = _resign(env, world.editor_phone, purpose)
        with pytest.raises(BadSignature):
            verify_envelope_signature(wrong, world.editor_phone.identity.public_key)


def test_header_changed_after_signing_does_not_decrypt_either(world) -> None:
    env = world.envelope(world.editor_phone)
    moved = _resign(
        dataclasses.replace(env, header=dataclasses.replace(env.header, height=1)),
        world.editor_phone,
    )
    with pytest.raises(BadKey):
        open_envelope(moved, world.ring.epoch(0).metadata_key)


def test_unsupported_version_is_refused_before_anything_else(world) -> None:
    env = world.envelope(world.editor_phone)
    newer = dataclasses.replace(env, header=dataclasses.replace(env.header, v=2))
    with pytest.raises(UnsupportedVersion):
        verify_envelope_signature(newer, world.editor_phone.identity.public_key)


def test_replayed_gapped_forked_and_broken_counters(world) -> None:
    device = world.editor_phone
    first = world.envelope(device, 1)
    second = world.envelope(device, 2, first)
    with pytest.raises(CounterReplay) as replay:
        check_continuity(first, first.tip)
    assert replay.value.details["have"] == 1
    assert same_position(first, first) is True
    fork = world.envelope(device, 1, update=b"another first update")
    with pytest.raises(Fork):
        same_position(fork, first)
    third = world.envelope(device, 3, second)
    with pytest.raises(CounterGap) as gap:
        check_continuity(third, first.tip)
    assert gap.value.code == "gap"
    unlinked = world.envelope(device, 2, fork)
    with pytest.raises(BrokenHashChain):
        check_continuity(unlinked, first.tip)
    with pytest.raises(BrokenHashChain):
        check_continuity(
            dataclasses.replace(first, header=dataclasses.replace(first.header, prev=b"\x01" * 32)),
            None,
        )


def test_viewer_and_outsider_may_not_write(world) -> None:
    with pytest.raises(Forbidden):
        check_envelope_authority(
            world.envelope(world.viewer_tablet), world.viewer_tablet.certificate, world.chain
        )
    with pytest.raises(Forbidden, match="not a member"):
        check_envelope_authority(
            world.envelope(world.outsider_pc), world.outsider_pc.certificate, world.chain
        )


def test_certificate_of_another_user_or_device_is_refused(world, now_ms) -> None:
    env = world.envelope(world.editor_phone)
    with pytest.raises(BadCertificate):
        check_envelope_authority(env, world.owner_laptop.certificate, world.chain)
    # The editor's device key certified by the outsider: the outsider is no member.
    fake = world.outsider.certify(world.editor_phone.identity.public_key, "phone", now_ms)
    with pytest.raises(Forbidden):
        check_envelope_authority(env, fake, world.chain)


def test_wrong_share_epoch_and_unknown_height(world, now_ms) -> None:
    device = world.editor_phone
    other_share = _resign(
        dataclasses.replace(
            (env := world.envelope(device)),
            header=dataclasses.replace(env.header, share=new_share_id(world.rand)),
        ),
        device,
    )
    with pytest.raises(WrongShare):
        check_envelope_authority(other_share, device.certificate, world.chain)
    with pytest.raises(WrongEpoch):
        check_envelope_authority(world.envelope(device, epoch=1), device.certificate, world.chain)
    with pytest.raises(UnknownHeight):
        check_envelope_authority(world.envelope(device, height=9), device.certificate, world.chain)
    # After a new epoch, writing under the new height with the old epoch is refused.
    ring = world.ring.rotated(world.rand)
    world.chain.append(make_key_epoch(world.chain, world.owner_laptop, ring.epoch(1).key_hash, 0))
    world.ring = ring
    with pytest.raises(WrongEpoch):
        check_envelope_authority(world.envelope(device, epoch=0), device.certificate, world.chain)
    check_envelope_authority(world.envelope(device, epoch=1), device.certificate, world.chain)
    # An envelope written before the rotation stays valid.
    check_envelope_authority(
        world.envelope(device, epoch=0, height=2), device.certificate, world.chain
    )


def test_removed_users_envelope_past_its_cutoff_is_refused(world, now_ms) -> None:
    device = world.editor_phone
    cert = device.certificate
    before = [world.envelope(device, 1)]
    before.append(world.envelope(device, 2, before[0]))
    world.chain.append(
        make_remove_user(
            world.chain, world.owner_laptop, world.editor.public_key, {device.device_id: 2}, now_ms
        )
    )
    # Written before the removal, within the cutoff: still valid for every replica.
    for env in before:
        check_envelope_authority(env, cert, world.chain)
    # Written later but claiming the old height: past the cutoff.
    late = world.envelope(device, 3, before[1], height=2)
    with pytest.raises(PastCutoff) as info:
        check_envelope_authority(late, cert, world.chain)
    assert info.value.details["cutoff"] == 2
    # Naming the new height: no longer a member.
    with pytest.raises(Forbidden):
        check_envelope_authority(world.envelope(device, 3, before[1]), cert, world.chain)


def test_demoted_writers_unlisted_device_has_cutoff_zero(world, now_ms) -> None:
    world.chain.append(
        make_change_role(
            world.chain, world.owner_laptop, world.editor.public_key, Role.VIEWER, now_ms, {}
        )
    )
    late = world.envelope(world.editor_phone, 1, height=2)
    with pytest.raises(PastCutoff):
        check_envelope_authority(late, world.editor_phone.certificate, world.chain)


def test_revoked_device_is_refused(world, now_ms) -> None:
    device = world.editor_phone
    first = world.envelope(device, 1)
    revocation = world.editor.revoke(device.device_id, now_ms)
    world.chain.append(make_revoke_device(world.chain, world.owner_laptop, revocation, 1, now_ms))
    check_envelope_authority(first, device.certificate, world.chain)
    with pytest.raises(Revoked) as info:
        check_envelope_authority(
            world.envelope(device, 2, first, height=2), device.certificate, world.chain
        )
    assert info.value.code == "revoked"
    with pytest.raises(Revoked):
        check_envelope_authority(world.envelope(device, 2, first), device.certificate, world.chain)


def test_wrong_key_does_not_open(world) -> None:
    env = world.envelope(world.editor_phone)
    with pytest.raises(BadKey):
        open_envelope(env, bytes(32))


def test_truncated_and_oversized_envelopes_are_refused(world) -> None:
    data = world.envelope(world.editor_phone).encode()
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError) as info:
            Envelope.decode(data[:cut])
        assert info.value.reason in {"truncated", "malformed"}
    with pytest.raises(DecodeError, match="exceeds") as big:
        Envelope.decode(b"\x00" * (Envelope.MAX_BYTES + 1))
    assert big.value.reason == "too_large"
    with pytest.raises(DecodeError) as trailing:
        Envelope.decode(data + b"\x00")
    assert trailing.value.reason == "trailing_bytes"


def test_continuity_with_tip_from_storage(world) -> None:
    first = world.envelope(world.owner_laptop)
    tip = EnvelopeTip(1, first.envelope_hash)
    check_continuity(world.envelope(world.owner_laptop, 2, first), tip)


def test_non_canonical_envelopes_are_refused_at_every_depth(world) -> None:
    """Decoding re-encodes without a second round of checks: every difference still shows."""
    env = world.envelope(world.owner_laptop, 2, world.envelope(world.owner_laptop, 1))
    wire = msgpack.unpackb(env.encode(), raw=False)
    header = wire["header"]
    reordered = {**wire, "header": dict(reversed(list(header.items())))}
    wide_counter = msgpack.packb(wire, use_bin_type=True).replace(
        b"\xa7counter\x02", b"\xa7counter\xcd\x00\x02"
    )
    seen_unsorted = {**wire, "header": {**header, "seen": [[b"\xff" * 32, 1], [b"\x00" * 32, 1]]}}
    for data in (
        msgpack.packb(reordered, use_bin_type=True),
        msgpack.packb({"sig": wire["sig"], **wire}, use_bin_type=True),
        wide_counter,
        msgpack.packb(seen_unsorted, use_bin_type=True),
    ):
        assert data != env.encode()
        with pytest.raises(DecodeError) as info:
            Envelope.decode(data)
        assert info.value.reason == "not_canonical"
    decoded = Envelope.decode(env.encode())
    assert decoded.envelope_hash == env.envelope_hash
    assert decoded.tip == EnvelopeTip(2, env.envelope_hash)


def test_an_invalid_header_cannot_be_encoded(world) -> None:
    env = world.envelope(world.owner_laptop)
    bad = dataclasses.replace(env, header=dataclasses.replace(env.header, counter=0))
    with pytest.raises(EncodeError, match="counter"):
        bad.encode()
