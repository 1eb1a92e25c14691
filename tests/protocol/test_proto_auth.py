"""Auth messages: built and signed by the device, bound to one relay, one challenge, one window."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.auth import (
    AuthChallenge,
    AuthResponse,
    answer_challenge,
    make_challenge,
    verify_auth,
)
from protocol.errors import AuthFailed, BadCertificate, BadSignature, Revoked, UnsupportedVersion
from protocol.signing import Purpose, sign

ORIGIN = "https://relay.example.org"


def _login(world, now_ms: int, origin: str = ORIGIN) -> tuple[AuthChallenge, AuthResponse]:
    challenge = make_challenge(ORIGIN, now_ms, world.rand)
    response = answer_challenge(
        world.editor_phone, origin, challenge.server_nonce, now_ms + 5, world.rand
    )
    return challenge, response


def test_login_round_trip_and_verify(world, now_ms) -> None:
    challenge, response = _login(world, now_ms)
    assert AuthChallenge.decode(challenge.encode()) == challenge
    decoded = AuthResponse.decode(response.encode())
    assert decoded == response
    cert = verify_auth(
        decoded, origin=ORIGIN, server_nonce=challenge.server_nonce, now_ms=now_ms + 100
    )
    assert cert.device_id == world.editor_phone.device_id
    assert cert.user_id == world.editor.user_id


def test_login_for_another_relay_is_refused(world, now_ms) -> None:
    challenge, response = _login(world, now_ms, origin="https://evil.example.org")
    with pytest.raises(AuthFailed, match="evil"):
        verify_auth(response, origin=ORIGIN, server_nonce=challenge.server_nonce, now_ms=now_ms)


def test_login_for_another_challenge_is_refused(world, now_ms) -> None:
    _, response = _login(world, now_ms)
    with pytest.raises(AuthFailed, match="another challenge"):
        verify_auth(response, origin=ORIGIN, server_nonce=bytes(32), now_ms=now_ms)


def test_login_outside_the_time_window_is_refused(world, now_ms) -> None:
    challenge, response = _login(world, now_ms)
    with pytest.raises(AuthFailed, match="device clock"):
        verify_auth(
            response, origin=ORIGIN, server_nonce=challenge.server_nonce, now_ms=now_ms + 61_000
        )


def test_forged_or_misdirected_signature_is_refused(world, now_ms) -> None:
    challenge, response = _login(world, now_ms)
    nonce = challenge.server_nonce
    changed = dataclasses.replace(response, time_ms=response.time_ms + 1)
    with pytest.raises(BadSignature):
        verify_auth(changed, origin=ORIGIN, server_nonce=nonce, now_ms=now_ms)
    key = world.editor_phone.identity.signing_key
    as_envelope = dataclasses.replace(
        response, sig=sign(key, Purpose.ENVELOPE, response.signed_bytes())
    )
    with pytest.raises(BadSignature):
        verify_auth(as_envelope, origin=ORIGIN, server_nonce=nonce, now_ms=now_ms)
    other_key = world.owner_laptop.identity.signing_key
    by_other = dataclasses.replace(
        response, sig=sign(other_key, Purpose.AUTH, response.signed_bytes())
    )
    with pytest.raises(BadSignature):
        verify_auth(by_other, origin=ORIGIN, server_nonce=nonce, now_ms=now_ms)


def test_bad_certificate_revoked_device_and_version(world, now_ms) -> None:
    challenge, response = _login(world, now_ms)
    nonce = challenge.server_nonce
    bad_cert = dataclasses.replace(response.certificate, name="other")
    with pytest.raises(BadCertificate):
        verify_auth(
            dataclasses.replace(response, certificate=bad_cert),
            origin=ORIGIN,
            server_nonce=nonce,
            now_ms=now_ms,
        )
    with pytest.raises(Revoked):
        verify_auth(
            response,
            origin=ORIGIN,
            server_nonce=nonce,
            now_ms=now_ms,
            revoked={world.editor_phone.device_id},
        )
    with pytest.raises(UnsupportedVersion):
        verify_auth(
            dataclasses.replace(response, v=2), origin=ORIGIN, server_nonce=nonce, now_ms=now_ms
        )
