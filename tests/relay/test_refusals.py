"""Forged, replayed, gapped, forked, oversized and malformed requests: clear errors, no change."""

from __future__ import annotations

import time

from protocol.auth import AuthChallenge, answer_challenge
from protocol.envelope import Envelope

from .conftest import RelayUnderTest
from .helpers import Api, Share, create_share, login, new_device, publish


async def _state(api: Api, share: Share, token: str) -> tuple[object, object]:
    log = await api.call("GET", f"{share.path}/envelopes?since=0", token=token)
    vector = await api.call("GET", f"{share.path}/vector", token=token)
    return log.body, vector.body


async def test_bad_envelopes_leave_the_log_unchanged(relay: RelayUnderTest) -> None:
    api = relay.api
    owner = new_device()
    await login(api, owner)
    share = await create_share(api, owner)
    first = owner.next_envelope(share.share_id, share.key)
    assert (await publish(api, share, owner, first)).status == 200
    before = await _state(api, share, owner.token)

    # Forged: one byte of the payload changed after signing.
    env = Envelope.decode(owner.next_envelope(share.share_id, share.key, advance=False))
    forged = Envelope(env.header, bytes([env.payload[0] ^ 1]) + env.payload[1:], env.sig)
    answer = await publish(api, share, owner, forged.encode())
    assert (answer.status, answer.code) == (400, "bad_signature")

    # Gapped: counter 3 while the device is at 1.
    owner.counter += 1
    gapped = owner.next_envelope(share.share_id, share.key, advance=False)
    owner.counter -= 1
    answer = await publish(api, share, owner, gapped)
    assert (answer.status, answer.code) == (409, "gap")
    assert answer.body["have"] == 1

    # Forked: a different envelope for counter 1.
    saved = (owner.counter, owner.prev)
    owner.counter, owner.prev = 0, bytes(32)
    fork = owner.next_envelope(share.share_id, share.key, update=b"another", advance=False)
    owner.counter, owner.prev = saved
    answer = await publish(api, share, owner, fork)
    assert (answer.status, answer.code) == (409, "fork")
    assert answer.body["stored"] == first
    assert answer.body["seq"] == 1

    # A good envelope followed by a bad one in one batch: neither is kept.
    good = owner.next_envelope(share.share_id, share.key, advance=False)
    answer = await publish(api, share, owner, good, fork)
    assert answer.status == 409

    # Causally premature: it has seen a device counter the relay does not hold.
    early = owner.next_envelope(share.share_id, share.key, seen={b"\x05" * 32: 3}, advance=False)
    answer = await publish(api, share, owner, early)
    assert (answer.status, answer.code) == (409, "missing_dependencies")

    # For another share than the URL's.
    other = await create_share(api, owner)
    answer = await publish(api, other, owner, good)
    assert (answer.status, answer.code) == (400, "bad_request")

    # Malformed: not msgpack; msgpack but not an envelope; an empty batch.
    answer = await api.call(
        "POST", f"{share.path}/envelopes", raw=b"\xc1garbage", token=owner.token
    )
    assert (answer.status, answer.code) == (400, "bad_request")
    answer = await publish(api, share, owner, b"\x81\xa1x\x01")
    assert (answer.status, answer.code) == (400, "malformed")
    answer = await api.call("POST", f"{share.path}/envelopes", {"envelopes": []}, token=owner.token)
    assert answer.status == 400

    # Oversized: one envelope over the limit; a request body over the limit.
    answer = await publish(api, share, owner, b"\x00" * (relay.settings.max_envelope_bytes + 1))
    assert (answer.status, answer.code) == (413, "too_large")
    answer = await api.call(
        "PUT",
        f"{share.path}/blocks/{'ab' * 32}",
        raw=b"\x00" * (relay.settings.max_request_bytes + 1),
        token=owner.token,
    )
    assert answer.status == 413

    assert await _state(api, share, owner.token) == before


async def test_login_refusals(relay: RelayUnderTest) -> None:
    api = relay.api
    device = new_device()
    got = await api.call("POST", "/v1/auth/challenge")
    challenge = AuthChallenge.decode(got.body["challenge"])
    now = time.time_ns() // 10**6
    response = answer_challenge(device.certified, challenge.origin, challenge.server_nonce, now)
    body = {"response": response.encode(), "register": True}
    assert (await api.call("POST", "/v1/auth/token", body)).status == 200
    replayed = await api.call("POST", "/v1/auth/token", body)
    assert (replayed.status, replayed.code) == (401, "unauthenticated")

    # Signed for another relay's origin.
    answer = await login(api, new_device(), origin="https://evil.example")
    assert (answer.status, answer.code) == (401, "auth_failed")
    # An unknown user who does not ask to register.
    answer = await login(api, new_device(), register=False)
    assert (answer.status, answer.code) == (401, "unauthenticated")
    # A made-up nonce.
    fake = answer_challenge(device.certified, challenge.origin, b"\x01" * 32, now)
    answer = await api.call("POST", "/v1/auth/token", {"response": fake.encode()})
    assert answer.status == 401
    # No token, a garbage token.
    assert (await api.call("GET", "/v1/shares")).status == 401
    assert (await api.call("GET", "/v1/shares", token="x.y.z")).status == 401
