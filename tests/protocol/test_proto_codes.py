"""Recovery codes, device linking and invites."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.chain import Role, make_add_user
from protocol.errors import (
    AuthFailed,
    BadCertificate,
    BadCode,
    DecodeError,
    Forbidden,
    WrongShare,
)
from protocol.invite import Invite, check_invite, make_invite
from protocol.keys import DeviceIdentity, UserIdentity
from protocol.linking import (
    CHEAP_KDF,
    LinkGrant,
    LinkOffer,
    LinkRequest,
    accept_link_request,
    link_secrets,
    make_link_request,
    new_link_code,
    open_link_grant,
    parse_link_code,
)
from protocol.recovery import (
    RecoveryBlob,
    new_recovery_code,
    parse_recovery_code,
    unwrap_user_key,
    wrap_user_key,
)

RELAY = "https://relay.example.org"


def _typo(code: str) -> str:
    i = next(i for i, ch in enumerate(code) if ch.isalpha())
    return code[:i] + ("B" if code[i] != "B" else "C") + code[i + 1 :]


def test_recovery_code_has_160_bits_and_round_trips(seeded) -> None:
    rand = seeded(1)
    code = new_recovery_code(rand)
    assert len(parse_recovery_code(code)) * 8 >= 128
    user = UserIdentity.generate(rand)
    blob = wrap_user_key(user, code, rand)
    assert RecoveryBlob.decode(blob.encode()) == blob
    assert unwrap_user_key(blob, code.lower()) == user
    assert user.seed not in blob.encode()


def test_recovery_refuses_typos_and_other_codes(seeded) -> None:
    rand = seeded(2)
    code, other = new_recovery_code(rand), new_recovery_code(rand)
    blob = wrap_user_key(UserIdentity.generate(rand), code, rand)
    with pytest.raises(BadCode, match="typo"):
        unwrap_user_key(blob, _typo(code))
    with pytest.raises(BadCode, match="does not open"):
        unwrap_user_key(blob, other)
    with pytest.raises(BadCode, match="does not open"):
        unwrap_user_key(dataclasses.replace(blob, user_id=bytes(32)), code)


def test_linking_a_new_device(seeded, now_ms) -> None:
    rand = seeded(3)
    user, new_device = UserIdentity.generate(rand), DeviceIdentity.generate(rand)
    code = new_link_code(rand)
    assert len(code) == 14
    assert len(parse_link_code(code)) == 11
    typed = link_secrets(code.lower().replace("-", " "), CHEAP_KDF)
    shown = link_secrets(code, CHEAP_KDF)
    assert typed.rendezvous == shown.rendezvous
    request = LinkRequest.decode(make_link_request(typed, new_device, "phone", now_ms).encode())
    grant = LinkGrant.decode(accept_link_request(shown, request, user, now_ms + 10).encode())
    cert = open_link_grant(typed, grant, new_device)
    assert cert.device_id == new_device.device_id
    assert cert.user_id == user.user_id
    assert cert.name == "phone"


def test_linking_refuses_wrong_code_substituted_key_and_old_requests(seeded, now_ms) -> None:
    rand = seeded(4)
    user, device, mallory = (
        UserIdentity.generate(rand),
        DeviceIdentity.generate(rand),
        DeviceIdentity.generate(rand),
    )
    code = new_link_code(rand)
    secrets = link_secrets(code, CHEAP_KDF)
    wrong = link_secrets(new_link_code(rand), CHEAP_KDF)
    request = make_link_request(secrets, device, "phone", now_ms)
    with pytest.raises(BadCode):
        accept_link_request(wrong, request, user, now_ms)
    swapped = dataclasses.replace(request, device_key=mallory.public_key)
    with pytest.raises(BadCode):
        accept_link_request(secrets, swapped, user, now_ms)
    with pytest.raises(AuthFailed, match="too old"):
        accept_link_request(secrets, request, user, now_ms + 11 * 60 * 1000)
    grant = accept_link_request(secrets, request, user, now_ms)
    with pytest.raises(BadCode):
        open_link_grant(wrong, grant, device)
    with pytest.raises(BadCertificate):
        open_link_grant(secrets, grant, mallory)
    with pytest.raises(BadCode, match="typo"):
        parse_link_code(_typo(code))


def test_a_link_offer_answers_one_request_only(seeded, now_ms) -> None:
    rand = seeded(5)
    user, device = UserIdentity.generate(rand), DeviceIdentity.generate(rand)
    offer = LinkOffer.create(now_ms, rand, CHEAP_KDF)
    typed = link_secrets(offer.code, CHEAP_KDF)
    assert typed.rendezvous == offer.rendezvous
    guess = make_link_request(link_secrets(new_link_code(rand), CHEAP_KDF), device, "x", now_ms)
    with pytest.raises(BadCode):
        offer.accept(guess, user, now_ms)
    assert offer.used
    right = make_link_request(typed, device, "phone", now_ms)
    with pytest.raises(BadCode, match="already used"):
        offer.accept(right, user, now_ms)
    late = LinkOffer.create(now_ms, rand, CHEAP_KDF)
    with pytest.raises(AuthFailed, match="expired"):
        late.accept(right, user, now_ms + 11 * 60 * 1000)
    fresh = LinkOffer.create(now_ms, rand, CHEAP_KDF)
    request = make_link_request(link_secrets(fresh.code, CHEAP_KDF), device, "phone", now_ms)
    grant = fresh.accept(request, user, now_ms)
    assert grant.certificate.device_id == device.device_id


def test_invite_round_trip_and_check(world, now_ms) -> None:
    invite = make_invite(world.chain, RELAY, world.owner_laptop.device_id)
    text = invite.to_text()
    assert text.startswith("drift-invite:")
    parsed = Invite.from_text(text)
    assert parsed == invite
    check_invite(parsed, world.chain)


def test_invite_for_another_share_or_by_a_non_owner_is_refused(world, make_world) -> None:
    other = make_world(2)
    invite = make_invite(other.chain, RELAY, other.owner_laptop.device_id)
    with pytest.raises(WrongShare):
        check_invite(invite, world.chain)
    by_editor = make_invite(world.chain, RELAY, world.editor_phone.device_id)
    with pytest.raises(Forbidden):
        check_invite(by_editor, world.chain)


def test_damaged_invite_is_refused(world) -> None:
    text = make_invite(world.chain, RELAY, world.owner_laptop.device_id).to_text()
    body = text[len("drift-invite:") :]
    with pytest.raises(BadCode):
        Invite.from_text("drift-invite:" + _typo(body))
    with pytest.raises(BadCode):
        Invite.from_text(body)
    with pytest.raises(BadCode):
        Invite.from_text(text[:-1])


def test_chain_roles_survive_an_invite_flow(world, now_ms) -> None:
    world.chain.append(
        make_add_user(
            world.chain, world.owner_laptop, world.outsider.public_key, Role.EDITOR, now_ms
        )
    )
    invite = Invite.from_text(
        make_invite(world.chain, RELAY, world.owner_laptop.device_id).to_text()
    )
    check_invite(invite, world.chain)
    with pytest.raises(DecodeError):
        Invite.decode(invite.encode() + b"\x00")
