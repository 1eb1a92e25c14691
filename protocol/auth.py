"""Device login at a relay: the device builds and signs the statement it authenticates with.

The relay sends a challenge (its origin, a fresh server nonce, its time). The device answers
with an ``AuthResponse`` naming the origin *it* connected to, the server nonce, a client nonce of
its own and its time, signed (purpose ``auth``) by its device key, with its certificate. Because
the device writes the origin itself, a login captured by one relay cannot be replayed at another;
the server nonce (single use, tracked by the relay) stops replays at the same relay; the time
window bounds how long a response is good for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container
from typing import ClassVar

from protocol.codec import Bin, Nested, Record, Text, UInt
from protocol.errors import AuthFailed, Revoked, UnsupportedVersion
from protocol.keys import CertifiedDevice, DeviceCertificate
from protocol.signing import (
    SIGNATURE_BYTES,
    Purpose,
    RandomBytes,
    default_random,
    sign,
    take_random,
    verify,
)

AUTH_VERSION = 1
NONCE_BYTES = 32
MAX_ORIGIN_BYTES = 256
DEFAULT_WINDOW_MS = 60_000


@dataclasses.dataclass(frozen=True)
class AuthChallenge(Record):
    v: int
    origin: str
    server_nonce: bytes
    server_time_ms: int

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("origin", Text(MAX_ORIGIN_BYTES, min_len=1)),
        ("server_nonce", Bin.exact(NONCE_BYTES)),
        ("server_time_ms", UInt()),
    )
    MAX_BYTES: ClassVar[int] = 512


@dataclasses.dataclass(frozen=True)
class AuthResponse(Record):
    v: int
    origin: str
    server_nonce: bytes
    client_nonce: bytes
    time_ms: int
    certificate: DeviceCertificate
    sig: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("origin", Text(MAX_ORIGIN_BYTES, min_len=1)),
        ("server_nonce", Bin.exact(NONCE_BYTES)),
        ("client_nonce", Bin.exact(NONCE_BYTES)),
        ("time_ms", UInt()),
        ("certificate", Nested(DeviceCertificate)),
        ("sig", Bin.exact(SIGNATURE_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 1024

    def signed_bytes(self) -> bytes:
        return dataclasses.replace(self, sig=bytes(SIGNATURE_BYTES)).encode()

    @property
    def device_id(self) -> bytes:
        return self.certificate.device_id


def make_challenge(
    origin: str, now_ms: int, random_bytes: RandomBytes = default_random
) -> AuthChallenge:
    """A relay's challenge; the relay must remember ``server_nonce`` until it is used once."""
    return AuthChallenge(AUTH_VERSION, origin, take_random(random_bytes, NONCE_BYTES), now_ms)


def answer_challenge(
    device: CertifiedDevice,
    origin: str,
    server_nonce: bytes,
    now_ms: int,
    random_bytes: RandomBytes = default_random,
) -> AuthResponse:
    """The device's signed login for the relay at ``origin`` (the URL the device dialled)."""
    unsigned = AuthResponse(
        v=AUTH_VERSION,
        origin=origin,
        server_nonce=server_nonce,
        client_nonce=take_random(random_bytes, NONCE_BYTES),
        time_ms=now_ms,
        certificate=device.certificate,
        sig=bytes(SIGNATURE_BYTES),
    )
    sig = sign(device.identity.signing_key, Purpose.AUTH, unsigned.signed_bytes())
    return dataclasses.replace(unsigned, sig=sig)


def verify_auth(
    response: AuthResponse,
    *,
    origin: str,
    server_nonce: bytes,
    now_ms: int,
    window_ms: int = DEFAULT_WINDOW_MS,
    revoked: Container[bytes] = frozenset(),
) -> DeviceCertificate:
    """Check a login for this relay and this challenge; return the verified device certificate.

    Raises ``UnsupportedVersion``, ``AuthFailed`` (other origin, other nonce, outside the time
    window), ``BadCertificate``, ``Revoked`` or ``BadSignature``.
    """
    if response.v != AUTH_VERSION:
        raise UnsupportedVersion(f"auth version {response.v} is not supported")
    if response.origin != origin:
        raise AuthFailed(f"login was made for {response.origin!r}, not this relay ({origin!r})")
    if response.server_nonce != server_nonce:
        raise AuthFailed("login answers another challenge")
    if abs(now_ms - response.time_ms) > window_ms:
        raise AuthFailed(
            f"login time is {abs(now_ms - response.time_ms)} ms away from the relay's clock "
            f"(at most {window_ms} ms allowed); check the device clock"
        )
    certificate = response.certificate.verify()
    if certificate.device_id in revoked:
        raise Revoked("this device has been revoked by its user")
    verify(certificate.device_key, Purpose.AUTH, response.signed_bytes(), response.sig)
    return certificate
