"""The device-linking rendezvous end to end over HTTP, on SQLite and on PostgreSQL.

A holder device opens the rendezvous its link code derives; a new device (no token) posts a
MAC'd request and waits for the grant; the holder waits for the request, certifies the key and
answers. The relay pairs them and bounds the anonymous side: one request, a short life, a rate
limit; it cannot forge either side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from protocol.errors import BadCertificate, BadCode
from protocol.keys import CertifiedDevice, DeviceIdentity
from protocol.linking import (
    CHEAP_KDF,
    LinkGrant,
    LinkOffer,
    LinkRequest,
    link_secrets,
    make_link_request,
    new_link_code,
    open_link_grant,
)

from .conftest import RelayUnderTest, backend_settings, running_relay
from .helpers import Api, Device, login, new_device


def _now() -> int:
    return time.time_ns() // 1_000_000


async def _open(api: Api, holder: Device, offer: LinkOffer) -> int:
    answer = await api.call(
        "POST", "/v1/link", {"rendezvous": offer.rendezvous}, token=holder.token
    )
    assert answer.status == 201, answer.body
    return int(answer.body["expires_ms"])


def _path(rendezvous: bytes, what: str) -> str:
    return f"/v1/link/{rendezvous.hex()}/{what}"


async def _holder_side(api: Api, holder: Device, offer: LinkOffer) -> str:
    """Wait for the request, certify it, post the grant; the linked device id (hex)."""
    got = await api.call(
        "GET", _path(offer.rendezvous, "request") + "?timeout_s=10", token=holder.token
    )
    assert got.status == 200, got.body
    assert got.body["request"] is not None
    request = LinkRequest.decode(got.body["request"])
    grant = offer.accept(request, holder.user, _now())
    posted = await api.call(
        "POST", _path(offer.rendezvous, "grant"), {"grant": grant.encode()}, token=holder.token
    )
    assert posted.status == 200, posted.body
    return grant.certificate.device_id.hex()


async def _new_device_side(api: Api, code: str, identity: DeviceIdentity) -> CertifiedDevice:
    secrets = link_secrets(code, CHEAP_KDF)
    request = make_link_request(secrets, identity, "phone", _now())
    posted = await api.call(
        "POST", _path(secrets.rendezvous, "request"), {"request": request.encode()}
    )
    assert posted.status == 200, posted.body
    got = await api.call("GET", _path(secrets.rendezvous, "grant") + "?timeout_s=10")
    assert got.status == 200, got.body
    assert got.body["grant"] is not None
    certificate = open_link_grant(secrets, LinkGrant.decode(got.body["grant"]), identity)
    return CertifiedDevice(identity, certificate)


async def test_a_new_device_links_with_the_short_code_and_logs_in(relay: RelayUnderTest) -> None:
    api = relay.api
    holder = new_device()
    await login(api, holder)
    offer = LinkOffer.create(_now(), cost=CHEAP_KDF)
    await _open(api, holder, offer)
    identity = DeviceIdentity.generate()
    linked_id, certified = await asyncio.gather(
        _holder_side(api, holder, offer), _new_device_side(api, offer.code, identity)
    )
    assert linked_id == certified.device_id.hex()
    assert certified.certificate.user_key == holder.user.public_key
    phone = Device(holder.user, certified)  # the same user (the phone holds no user key)
    # The new device is one of the user's: it logs in to the existing account.
    assert (await login(api, phone, register=False)).status == 200
    assert (await api.call("GET", "/v1/shares", token=phone.token)).status == 200


async def test_a_used_code_takes_no_second_request(relay: RelayUnderTest) -> None:
    api = relay.api
    holder = new_device()
    await login(api, holder)
    offer = LinkOffer.create(_now(), cost=CHEAP_KDF)
    await _open(api, holder, offer)
    secrets = link_secrets(offer.code, CHEAP_KDF)
    first = make_link_request(secrets, DeviceIdentity.generate(), "phone", _now())
    second = make_link_request(secrets, DeviceIdentity.generate(), "intruder", _now())
    path = _path(secrets.rendezvous, "request")
    assert (await api.call("POST", path, {"request": first.encode()})).status == 200
    # A resend of the same request (its answer lost) is harmless; another one is refused.
    assert (await api.call("POST", path, {"request": first.encode()})).status == 200
    refused = await api.call("POST", path, {"request": second.encode()})
    assert (refused.status, refused.code) == (409, "conflict")
    assert "already used" in refused.body["message"]
    got = await api.call("GET", path + "?timeout_s=0", token=holder.token)
    assert got.body["request"] == first.encode()


async def test_a_mistyped_code_finds_no_rendezvous_and_gets_no_certificate(
    relay: RelayUnderTest,
) -> None:
    api = relay.api
    holder = new_device()
    await login(api, holder)
    offer = LinkOffer.create(_now(), cost=CHEAP_KDF)
    await _open(api, holder, offer)
    wrong = link_secrets(new_link_code(), CHEAP_KDF)
    request = make_link_request(wrong, DeviceIdentity.generate(), "phone", _now())
    answer = await api.call(
        "POST", _path(wrong.rendezvous, "request"), {"request": request.encode()}
    )
    assert (answer.status, answer.code) == (404, "not_found")
    assert "check the code" in answer.body["message"]
    waited = await api.call("GET", _path(wrong.rendezvous, "grant") + "?timeout_s=0")
    assert waited.status == 404
    # The holder saw nothing and certified nothing.
    got = await api.call(
        "GET", _path(offer.rendezvous, "request") + "?timeout_s=0", token=holder.token
    )
    assert got.body["request"] is None
    assert not offer.used


async def test_a_request_with_a_wrong_mac_is_refused_and_the_new_device_is_told(
    relay: RelayUnderTest,
) -> None:
    """What a relay substituting its own key would do: right rendezvous, no code, bad MAC."""
    api = relay.api
    holder = new_device()
    await login(api, holder)
    offer = LinkOffer.create(_now(), cost=CHEAP_KDF)
    await _open(api, holder, offer)
    forged_secrets = dataclasses.replace(offer.secrets, mac_key=bytes(32))
    forged = make_link_request(forged_secrets, DeviceIdentity.generate(), "evil", _now())
    path = _path(offer.rendezvous, "request")
    assert (await api.call("POST", path, {"request": forged.encode()})).status == 200
    got = await api.call("GET", path + "?timeout_s=5", token=holder.token)
    with pytest.raises(BadCode):
        offer.accept(LinkRequest.decode(got.body["request"]), holder.user, _now())
    refused = await api.call(
        "POST",
        _path(offer.rendezvous, "grant"),
        {"refused": "the request was not made with this link code"},
        token=holder.token,
    )
    assert refused.status == 200
    waited = await api.call("GET", _path(offer.rendezvous, "grant") + "?timeout_s=5")
    assert (waited.status, waited.code) == (403, "link_refused")
    assert "not made with this link code" in waited.body["message"]


async def test_a_tampered_grant_is_detected_by_the_new_device(relay: RelayUnderTest) -> None:
    api = relay.api
    holder = new_device()
    await login(api, holder)
    offer = LinkOffer.create(_now(), cost=CHEAP_KDF)
    await _open(api, holder, offer)
    identity = DeviceIdentity.generate()
    secrets = link_secrets(offer.code, CHEAP_KDF)
    request = make_link_request(secrets, identity, "phone", _now())
    grant = offer.accept(request, holder.user, _now())
    # A relay swapping in a certificate of its own user for the same device key.
    other = new_device()
    swapped = dataclasses.replace(
        grant, certificate=other.user.certify(identity.public_key, "phone", _now())
    )
    with pytest.raises(BadCode):
        open_link_grant(secrets, swapped, identity)
    # And a grant (validly MAC'd) for another device's key is refused too.
    stranger = DeviceIdentity.generate()
    with pytest.raises(BadCertificate):
        open_link_grant(secrets, grant, stranger)


async def test_only_the_opener_sees_the_request_and_answers(relay: RelayUnderTest) -> None:
    api = relay.api
    holder, other = new_device(), new_device()
    await login(api, holder)
    await login(api, other)
    offer = LinkOffer.create(_now(), cost=CHEAP_KDF)
    await _open(api, holder, offer)
    path = _path(offer.rendezvous, "request")
    assert (await api.call("GET", path + "?timeout_s=0")).status == 401
    assert (await api.call("GET", path + "?timeout_s=0", token=other.token)).status == 404
    early = await api.call(
        "POST", _path(offer.rendezvous, "grant"), {"refused": "no"}, token=holder.token
    )
    assert (early.status, early.code) == (409, "conflict")
    taken = await api.call("POST", "/v1/link", {"rendezvous": offer.rendezvous}, token=other.token)
    assert (taken.status, taken.code) == (409, "conflict")


async def test_a_device_holds_few_rendezvous_at_once(relay: RelayUnderTest) -> None:
    api = relay.api
    holder = new_device()
    await login(api, holder)
    statuses = []
    for i in range(relay.settings.link_open_max_per_device + 1):
        answer = await api.call(
            "POST", "/v1/link", {"rendezvous": bytes([i]) * 16}, token=holder.token
        )
        statuses.append(answer.status)
    assert statuses == [201] * relay.settings.link_open_max_per_device + [429]


@pytest.mark.parametrize("kind", ["sqlite+dir", "pg+s3+redis"])
async def test_an_expired_rendezvous_answers_expired(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, aws_env: None
) -> None:
    settings = dataclasses.replace(backend_settings(kind, tmp_path, request), link_ttl_s=1)
    async with running_relay(settings) as relay:
        api = relay.api
        holder = new_device()
        await login(api, holder)
        offer = LinkOffer.create(_now(), cost=CHEAP_KDF)
        await _open(api, holder, offer)
        request_ = make_link_request(offer.secrets, DeviceIdentity.generate(), "phone", _now())
        await asyncio.sleep(1.2)
        late = await api.call(
            "POST", _path(offer.rendezvous, "request"), {"request": request_.encode()}
        )
        assert (late.status, late.code) == (410, "expired")
        assert "show a new one" in late.body["message"]
        waited = await api.call("GET", _path(offer.rendezvous, "grant") + "?timeout_s=0")
        assert waited.status == 410


async def test_the_new_devices_calls_are_throttled_per_client(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = dataclasses.replace(
        backend_settings("sqlite+dir", tmp_path, request), logins_per_minute_per_client=3
    )
    async with running_relay(settings) as relay:
        path = _path(bytes(16), "grant") + "?timeout_s=0"
        statuses = [(await relay.api.call("GET", path)).status for _ in range(4)]
        assert statuses == [404, 404, 404, 429]


async def test_a_request_for_another_rendezvous_or_oversized_is_refused(
    relay: RelayUnderTest,
) -> None:
    api = relay.api
    secrets = link_secrets(new_link_code(), CHEAP_KDF)
    request = make_link_request(secrets, DeviceIdentity.generate(), "phone", _now())
    wrong_place = await api.call("POST", _path(bytes(16), "request"), {"request": request.encode()})
    assert (wrong_place.status, wrong_place.code) == (400, "bad_request")
    big = await api.call("POST", _path(secrets.rendezvous, "request"), {"request": b"\x00" * 4096})
    assert big.status in (400, 413)
