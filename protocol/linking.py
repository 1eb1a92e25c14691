"""Linking a new device with a short one-time code.

An existing device that holds the user key shows a link code (``XXXX-XXXX-XXXX``: 11 random base32
characters, 55 bits, and a check character). The user types it on the new device. Both derive,
with Argon2id (so a relay that sees the exchange cannot try all codes in the code's short life),
a rendezvous id (how the relay pairs the two) and a MAC key. The new device sends a
``LinkRequest`` (its device public key and name) authenticated with the MAC; the existing device
checks it, certifies the key with the user key and answers with a ``LinkGrant`` holding the
certificate, also authenticated. A relay in between can delay or drop but not substitute a key.
A code is good for one request: the existing device forgets it after the first attempt, right
or wrong.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import ClassVar

from nacl.bindings import crypto_pwhash_alg
from nacl.pwhash import argon2id

from protocol import ids
from protocol.codec import Bin, Nested, Record, Text, UInt
from protocol.errors import AuthFailed, BadCertificate, BadCode, UnsupportedVersion
from protocol.keys import (
    MAX_DEVICE_NAME_BYTES,
    DeviceCertificate,
    DeviceIdentity,
    UserIdentity,
)
from protocol.signing import (
    PUBLIC_KEY_BYTES,
    RandomBytes,
    default_random,
    keyed_hash,
    take_random,
)

LINK_VERSION = 1
LINK_RANDOM_CHARS = 11
RENDEZVOUS_BYTES = 16
MAC_BYTES = 32
DEFAULT_MAX_AGE_MS = 10 * 60 * 1000
_SALT = b"driftsync/v1/lnk"  # 16 bytes: Argon2id's salt size
_MAC_PERSON = b"driftsync/v1/mac"


@dataclasses.dataclass(frozen=True)
class KdfCost:
    """Argon2id cost of turning a link code into keys (tests and simulations pass a cheap one)."""

    ops: int = argon2id.OPSLIMIT_INTERACTIVE
    mem_bytes: int = argon2id.MEMLIMIT_INTERACTIVE


CHEAP_KDF = KdfCost(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)


@dataclasses.dataclass(frozen=True, repr=False)
class LinkSecrets:
    rendezvous: bytes
    mac_key: bytes


def new_link_code(random_bytes: RandomBytes = default_random) -> str:
    chars = "".join(ids.ALPHABET[b % 32] for b in take_random(random_bytes, LINK_RANDOM_CHARS))
    return ids.group(ids.add_checks(chars, LINK_RANDOM_CHARS), 4)


def parse_link_code(text: str) -> str:
    """The code's canonical characters; ``BadCode`` on a typo."""
    chars = ids.normalize(text)
    if len(chars) != LINK_RANDOM_CHARS + 1:
        raise BadCode(f"a link code has {LINK_RANDOM_CHARS + 1} letters and digits")
    return ids.strip_checks(chars, LINK_RANDOM_CHARS, "link code")


def link_secrets(code: str, cost: KdfCost = KdfCost()) -> LinkSecrets:
    material = crypto_pwhash_alg(
        RENDEZVOUS_BYTES + MAC_BYTES,
        parse_link_code(code).encode("ascii"),
        _SALT,
        cost.ops,
        cost.mem_bytes,
        argon2id.ALG,
    )
    return LinkSecrets(material[:RENDEZVOUS_BYTES], material[RENDEZVOUS_BYTES:])


def _mac(secrets: LinkSecrets, label: bytes, message: bytes) -> bytes:
    return keyed_hash(label + b"\x00" + message, person=_MAC_PERSON, key=secrets.mac_key)


@dataclasses.dataclass(frozen=True)
class LinkRequest(Record):
    v: int
    rendezvous: bytes
    device_key: bytes
    name: str
    time_ms: int
    mac: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("rendezvous", Bin.exact(RENDEZVOUS_BYTES)),
        ("device_key", Bin.exact(PUBLIC_KEY_BYTES)),
        ("name", Text(MAX_DEVICE_NAME_BYTES)),
        ("time_ms", UInt()),
        ("mac", Bin.exact(MAC_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 512

    def mac_input(self) -> bytes:
        return dataclasses.replace(self, mac=bytes(MAC_BYTES)).encode()


@dataclasses.dataclass(frozen=True)
class LinkGrant(Record):
    v: int
    rendezvous: bytes
    certificate: DeviceCertificate
    mac: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("rendezvous", Bin.exact(RENDEZVOUS_BYTES)),
        ("certificate", Nested(DeviceCertificate)),
        ("mac", Bin.exact(MAC_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 1024

    def mac_input(self) -> bytes:
        return dataclasses.replace(self, mac=bytes(MAC_BYTES)).encode()


def make_link_request(
    secrets: LinkSecrets, device: DeviceIdentity, name: str, now_ms: int
) -> LinkRequest:
    """On the new device, after the user typed the code."""
    unsigned = LinkRequest(
        LINK_VERSION, secrets.rendezvous, device.public_key, name, now_ms, bytes(MAC_BYTES)
    )
    mac = _mac(secrets, b"request", unsigned.mac_input())
    return dataclasses.replace(unsigned, mac=mac)


def accept_link_request(
    secrets: LinkSecrets,
    request: LinkRequest,
    user: UserIdentity,
    now_ms: int,
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
) -> LinkGrant:
    """On the existing device: check the request and certify the new device's key."""
    if request.v != LINK_VERSION:
        raise UnsupportedVersion(f"link request version {request.v} is not supported")
    expected = _mac(secrets, b"request", request.mac_input())
    if request.rendezvous != secrets.rendezvous or not hmac.compare_digest(expected, request.mac):
        raise BadCode("the link request was not made with this link code")
    if abs(now_ms - request.time_ms) > max_age_ms:
        raise AuthFailed("the link request is too old; start linking again")
    certificate = user.certify(request.device_key, request.name, now_ms)
    unsigned = LinkGrant(LINK_VERSION, secrets.rendezvous, certificate, bytes(MAC_BYTES))
    return dataclasses.replace(unsigned, mac=_mac(secrets, b"grant", unsigned.mac_input()))


class LinkOffer:
    """The existing device's side of one link code: it answers one request, right or wrong.

    Holding the offer (not just the code) is what makes the code one-time: after the first
    request, valid or not, ``accept`` refuses everything, so a guesser gets a single try.
    """

    def __init__(self, code: str, secrets: LinkSecrets, expires_ms: int) -> None:
        self.code = code
        self.secrets = secrets
        self.expires_ms = expires_ms
        self._used = False

    @classmethod
    def create(
        cls,
        now_ms: int,
        random_bytes: RandomBytes = default_random,
        cost: KdfCost = KdfCost(),
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
    ) -> LinkOffer:
        code = new_link_code(random_bytes)
        return cls(code, link_secrets(code, cost), now_ms + max_age_ms)

    @property
    def rendezvous(self) -> bytes:
        return self.secrets.rendezvous

    @property
    def used(self) -> bool:
        return self._used

    def accept(self, request: LinkRequest, user: UserIdentity, now_ms: int) -> LinkGrant:
        if self._used:
            raise BadCode("this link code was already used; show a new one")
        self._used = True
        if now_ms > self.expires_ms:
            raise AuthFailed("this link code has expired; show a new one")
        return accept_link_request(self.secrets, request, user, now_ms)


def open_link_grant(
    secrets: LinkSecrets, grant: LinkGrant, device: DeviceIdentity
) -> DeviceCertificate:
    """On the new device: the certificate, checked to come from the code's holder and for us."""
    if grant.v != LINK_VERSION:
        raise UnsupportedVersion(f"link grant version {grant.v} is not supported")
    expected = _mac(secrets, b"grant", grant.mac_input())
    if grant.rendezvous != secrets.rendezvous or not hmac.compare_digest(expected, grant.mac):
        raise BadCode("the link grant was not made with this link code")
    if grant.certificate.device_key != device.public_key:
        raise BadCertificate("the link grant certifies another device")
    return grant.certificate.verify()
