"""The device's identity on disk: its key (0600) and install id, its certificate, the user key.

``drift init`` makes a user key and a first device, certifies the device and returns a recovery
code (shown once, never stored): it wraps the user key so losing every device loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from peer.device.home import Home
from peer.device.toml import write_atomic
from peer.errors import ConfigError, NotInitialized
from protocol import ids
from protocol.errors import ProtocolError
from protocol.keys import (
    CertifiedDevice,
    DeviceCertificate,
    DeviceIdentity,
    UserIdentity,
    load_device_identity,
    load_user_identity,
    save_device_identity,
    save_user_identity,
)
from protocol.recovery import RecoveryBlob, new_recovery_code, wrap_user_key
from seams import Clock, RandomSource


@dataclass(frozen=True, slots=True)
class NewIdentity:
    device: CertifiedDevice
    user: UserIdentity
    recovery_code: str
    recovery_blob: RecoveryBlob


def init_identity(home: Home, name: str, clock: Clock, rng: RandomSource) -> NewIdentity:
    """A new user and this device as its first one; refuses to overwrite an existing identity."""
    if home.device_key.exists():
        raise ConfigError(
            f"{home.root} already holds a device identity",
            hint="use another --home, or remove that directory to start over",
        )
    home.ensure()
    user = UserIdentity.generate(rng.bytes)
    device = DeviceIdentity.generate(rng.bytes)
    certificate = user.certify(device.public_key, name, clock.now_ms())
    save_user_identity(home.user_key, user)
    save_device_identity(home.device_key, device)
    write_atomic(home.device_cert, certificate.encode())
    code = new_recovery_code(rng.bytes)
    return NewIdentity(
        CertifiedDevice(device, certificate), user, code, wrap_user_key(user, code, rng.bytes)
    )


def recover_identity(
    home: Home, user: UserIdentity, name: str, clock: Clock, rng: RandomSource
) -> CertifiedDevice:
    """This device as a new one of ``user``, whose key came back from its recovery code."""
    if home.device_key.exists():
        raise ConfigError(
            f"{home.root} already holds a device identity",
            hint="recover into a new --home; this one belongs to a device you still have",
        )
    home.ensure()
    device = DeviceIdentity.generate(rng.bytes)
    certificate = user.certify(device.public_key, name, clock.now_ms())
    save_user_identity(home.user_key, user)
    save_device_identity(home.device_key, device)
    write_atomic(home.device_cert, certificate.encode())
    return CertifiedDevice(device, certificate)


def new_device_key(home: Home, rng: RandomSource) -> DeviceIdentity:
    """A device key for a device that will be certified by another one (device linking)."""
    if home.device_key.exists():
        raise ConfigError(f"{home.root} already holds a device identity")
    home.ensure()
    device = DeviceIdentity.generate(rng.bytes)
    save_device_identity(home.device_key, device)
    return device


def uncertified_device_key(home: Home, rng: RandomSource) -> DeviceIdentity:
    """The key of a device waiting for its certificate: the one a failed link attempt left,
    else a new one. Refused on a device that is set up already."""
    if home.device_cert.exists():
        raise ConfigError(
            f"{home.root} already holds a certified device",
            hint="link from a fresh home (pass --home DIR or set DRIFT_HOME)",
        )
    if home.device_key.exists():
        return load_device_identity(home.device_key, rng.bytes)
    return new_device_key(home, rng)


def install_certificate(home: Home, certificate: DeviceCertificate) -> CertifiedDevice:
    device = load_device_identity(home.device_key)
    certified = CertifiedDevice(device, certificate.verify())
    write_atomic(home.device_cert, certificate.encode())
    return certified


def load_device(home: Home, rng: RandomSource) -> CertifiedDevice:
    if not home.device_key.exists() or not home.device_cert.exists():
        raise NotInitialized(str(home.root))
    try:
        device = load_device_identity(home.device_key, rng.bytes)
        certificate = DeviceCertificate.decode(home.device_cert.read_bytes()).verify()
        return CertifiedDevice(device, certificate)
    except (ProtocolError, OSError) as exc:
        raise ConfigError(
            f"the device identity in {home.root} cannot be loaded: {exc}",
            hint="check the files' permissions (they must be 0600)",
        ) from exc


def load_user(home: Home) -> UserIdentity | None:
    """The user key, on devices that hold it."""
    if not home.user_key.exists():
        return None
    try:
        return load_user_identity(home.user_key)
    except ProtocolError as exc:
        raise ConfigError(f"the user key in {home.root} cannot be loaded: {exc}") from exc


def user_code(user_key: bytes) -> str:
    """The printable form of a user's public key (what an owner needs to invite them)."""
    return ids.format_id(user_key)


def parse_user_code(text: str) -> bytes:
    try:
        return ids.parse_id(text)
    except ProtocolError as exc:
        raise ConfigError(
            f"{text!r} is not a user code: {exc}",
            hint="ask the person for the code `drift status --json` shows as user_code",
        ) from exc


def device_label(device_id: bytes) -> str:
    return ids.short_id(device_id)
