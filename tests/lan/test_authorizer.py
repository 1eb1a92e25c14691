"""Admission per share, by the membership chain and by revocations."""

from __future__ import annotations

import dataclasses

import pytest

from peer.lan.authorizer import Refusal
from protocol.errors import BadCertificate, WrongShare
from tests.lan.world import NOW_MS, World


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(5)


def test_members_of_any_role_are_admitted_and_others_told_why_not(world: World) -> None:
    authorizer = world.authorizer()
    share = world.share
    assert authorizer.refusal(share, world.laptop.certificate) is None
    assert authorizer.refusal(share, world.phone.certificate) is None
    assert authorizer.refusal(share, world.outsider_pc.certificate) is Refusal.NOT_MEMBER
    assert authorizer.refusal(share, world.removed_pc.certificate) is Refusal.REMOVED
    assert authorizer.refusal(share, world.tablet.certificate) is Refusal.REVOKED
    assert authorizer.refusal(bytes(16), world.phone.certificate) is Refusal.UNKNOWN_SHARE
    forged = dataclasses.replace(world.outsider_pc.certificate, user_key=world.editor.public_key)
    assert authorizer.refusal(share, forged) is Refusal.BAD_CERTIFICATE
    assert authorizer.admitted_shares(world.phone.certificate) == [share]
    assert not authorizer.admits_any(world.outsider_pc.certificate)


def test_the_removed_user_was_admitted_before_the_removal(world: World) -> None:
    before = world.authorizer(height=2)
    assert before.admits(world.share, world.removed_pc.certificate)
    generation = before.generation
    before.adopt(world.share, world.chain_copy())
    assert before.generation > generation
    assert not before.admits(world.share, world.removed_pc.certificate)


def test_a_revocation_known_outside_the_chain_refuses_the_device(world: World) -> None:
    authorizer = world.authorizer(height=1)  # the chain has not revoked the tablet yet
    assert authorizer.admits(world.share, world.tablet.certificate)
    authorizer.add_revocation(world.editor.revoke(world.tablet.device_id, NOW_MS))
    assert authorizer.refusal(world.share, world.tablet.certificate) is Refusal.REVOKED
    assert authorizer.admits(world.share, world.phone.certificate)
    # A revocation only counts from the device's own user.
    stranger = world.outsider.revoke(world.phone.device_id, NOW_MS)
    authorizer.add_revocation(stranger)
    assert authorizer.admits(world.share, world.phone.certificate)
    with pytest.raises(BadCertificate):
        authorizer.add_revocation(dataclasses.replace(stranger, revoked_ms=1))


def test_only_extensions_of_the_current_chain_are_adopted(world: World) -> None:
    authorizer = world.authorizer()
    with pytest.raises(ValueError, match="extend"):
        authorizer.adopt(world.share, world.chain_copy(height=2))
    with pytest.raises(WrongShare):
        authorizer.adopt(bytes(16), world.chain_copy())
