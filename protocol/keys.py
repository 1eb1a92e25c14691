"""Users, devices, device certificates and revocations, and key files on disk (mode 0600).

A user has an Ed25519 *user key*; it certifies each of its devices. A device has its own Ed25519
key (its X25519 key for key wrapping is derived from it) and an *install id* that changes whenever
the key file is restored from a backup or copied to another machine: the install id is kept beside
the key, bound to the key file's inode and ctime, and a key file found changed gets a new one.
The crdt package derives its Yjs client id from ``(device_id, install_id)``, so a restored device
never reuses the client id, and so the clocks, of its former self.

Key files are written atomically with mode 0600 and refused when readable by others.
Ids are SHA-256 hashes (domain ``device-id`` / ``user-id``) of the public keys; see ``protocol.ids``
for their printable form.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import stat
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import ClassVar, Protocol, Self

from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519
from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey

from protocol import ids
from protocol.codec import Bin, Record, Text, UInt
from protocol.errors import BadCertificate, DecodeError, KeyFileError, ProtocolError
from protocol.signing import (
    HASH_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Purpose,
    RandomBytes,
    default_random,
    digest,
    sign,
    take_random,
    verify,
)

SEED_BYTES = 32
INSTALL_ID_BYTES = 16
MAX_DEVICE_NAME_BYTES = 64
CERTIFICATE_VERSION = 1


def device_id_of(public_key: bytes) -> bytes:
    """The 32-byte device id of a device public key."""
    return digest(Purpose.DEVICE_ID, public_key)


def user_id_of(public_key: bytes) -> bytes:
    """The 32-byte user id of a user public key."""
    return digest(Purpose.USER_ID, public_key)


def x25519_public_of(device_public_key: bytes) -> bytes:
    """The X25519 public key (for boxes) that belongs to an Ed25519 device public key."""
    try:
        return crypto_sign_ed25519_pk_to_curve25519(device_public_key)
    except Exception as exc:  # libsodium refuses small-order or malformed points
        raise BadCertificate("device public key is not a valid Ed25519 point") from exc


class _UserSigned(Hashable, Protocol):
    v: int
    user_key: bytes
    sig: bytes

    def signed_bytes(self) -> bytes: ...


def _check_user_signed(
    record: _UserSigned, purpose: Purpose, what: str, user_key: bytes | None
) -> None:
    """A statement a user key signed: its version, its signer, its signature."""
    if record.v != CERTIFICATE_VERSION:
        raise BadCertificate(f"{what} version {record.v} is not supported")
    if user_key is not None and user_key != record.user_key:
        raise BadCertificate(f"{what} was signed by another user")
    key = (purpose, record)
    if key in _VERIFIED_STATEMENTS:
        return
    try:
        verify(record.user_key, purpose, record.signed_bytes(), record.sig)
    except ProtocolError as exc:
        raise BadCertificate(f"{what} signature does not verify") from exc
    if len(_VERIFIED_STATEMENTS) >= _VERIFIED_STATEMENTS_MAX:
        _VERIFIED_STATEMENTS.clear()
    _VERIFIED_STATEMENTS.add(key)


# Statements whose signature verified (records compare field by field, signature included):
# every envelope carries its device's certificate, so a replica or the relay would otherwise
# check the same signature once per envelope. Only successes are kept.
_VERIFIED_STATEMENTS: set[tuple[Purpose, Hashable]] = set()
_VERIFIED_STATEMENTS_MAX = 4096


@dataclasses.dataclass(frozen=True)
class DeviceCertificate(Record):
    """A user's signed statement: this Ed25519 key is one of my devices."""

    v: int
    user_key: bytes
    device_key: bytes
    name: str
    issued_ms: int
    sig: bytes

    DECODE_MEMO: ClassVar[bool] = True
    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("user_key", Bin.exact(PUBLIC_KEY_BYTES)),
        ("device_key", Bin.exact(PUBLIC_KEY_BYTES)),
        ("name", Text(MAX_DEVICE_NAME_BYTES)),
        ("issued_ms", UInt()),
        ("sig", Bin.exact(SIGNATURE_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 512

    # Hashed once per certificate (it is immutable): the ids are asked for with every envelope
    # checked and every LAN frame, ~5 times per envelope a device applies.
    @functools.cached_property
    def user_id(self) -> bytes:
        return user_id_of(self.user_key)

    @functools.cached_property
    def device_id(self) -> bytes:
        return device_id_of(self.device_key)

    def signed_bytes(self) -> bytes:
        return dataclasses.replace(self, sig=bytes(SIGNATURE_BYTES)).encode()

    def verify(self, user_key: bytes | None = None) -> Self:
        """Check the signature (and, if given, that ``user_key`` issued it); return self."""
        _check_user_signed(self, Purpose.DEVICE_CERTIFICATE, "device certificate", user_key)
        return self


@dataclasses.dataclass(frozen=True)
class DeviceRevocation(Record):
    """A user's signed statement: this device of mine is lost; refuse it from now on."""

    v: int
    user_key: bytes
    device_id: bytes
    revoked_ms: int
    sig: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("user_key", Bin.exact(PUBLIC_KEY_BYTES)),
        ("device_id", Bin.exact(HASH_BYTES)),
        ("revoked_ms", UInt()),
        ("sig", Bin.exact(SIGNATURE_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 256

    @property
    def user_id(self) -> bytes:
        return user_id_of(self.user_key)

    def signed_bytes(self) -> bytes:
        return dataclasses.replace(self, sig=bytes(SIGNATURE_BYTES)).encode()

    def verify(self, user_key: bytes | None = None) -> Self:
        """Check the signature (and, if given, that ``user_key`` made it); return self."""
        _check_user_signed(self, Purpose.DEVICE_REVOCATION, "revocation", user_key)
        return self


@dataclasses.dataclass(frozen=True, repr=False)
class UserIdentity:
    """A user's Ed25519 key pair (the seed is secret; ``repr`` never shows it)."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise KeyFileError(f"a user key seed is {SEED_BYTES} bytes, got {len(self.seed)}")

    @classmethod
    def generate(cls, random_bytes: RandomBytes = default_random) -> UserIdentity:
        return cls(take_random(random_bytes, SEED_BYTES))

    # Derived once per identity: deriving a key pair from its seed is a scalar multiplication,
    # and the device's id is asked for with every envelope it seals or receives.
    @functools.cached_property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    @functools.cached_property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @functools.cached_property
    def user_id(self) -> bytes:
        return user_id_of(self.public_key)

    @functools.cached_property
    def box_private_key(self) -> PrivateKey:
        """The X25519 key that opens key wraps addressed to the user (``protocol.keyschedule``)."""
        return self.signing_key.to_curve25519_private_key()

    def certify(self, device_public_key: bytes, name: str, now_ms: int) -> DeviceCertificate:
        unsigned = DeviceCertificate(
            v=CERTIFICATE_VERSION,
            user_key=self.public_key,
            device_key=device_public_key,
            name=name,
            issued_ms=now_ms,
            sig=bytes(SIGNATURE_BYTES),
        )
        sig = sign(self.signing_key, Purpose.DEVICE_CERTIFICATE, unsigned.signed_bytes())
        return dataclasses.replace(unsigned, sig=sig)

    def revoke(self, device_id: bytes, now_ms: int) -> DeviceRevocation:
        unsigned = DeviceRevocation(
            v=CERTIFICATE_VERSION,
            user_key=self.public_key,
            device_id=device_id,
            revoked_ms=now_ms,
            sig=bytes(SIGNATURE_BYTES),
        )
        sig = sign(self.signing_key, Purpose.DEVICE_REVOCATION, unsigned.signed_bytes())
        return dataclasses.replace(unsigned, sig=sig)

    def __repr__(self) -> str:
        return f"UserIdentity({ids.short_id(self.user_id)})"


@dataclasses.dataclass(frozen=True, repr=False)
class DeviceIdentity:
    """A device's Ed25519 key pair, its derived X25519 key and its install id."""

    seed: bytes
    install_id: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise KeyFileError(f"a device key seed is {SEED_BYTES} bytes, got {len(self.seed)}")
        if len(self.install_id) != INSTALL_ID_BYTES:
            raise KeyFileError(f"an install id is {INSTALL_ID_BYTES} bytes")

    @classmethod
    def generate(cls, random_bytes: RandomBytes = default_random) -> DeviceIdentity:
        seed = take_random(random_bytes, SEED_BYTES)
        return cls(seed, take_random(random_bytes, INSTALL_ID_BYTES))

    def with_new_install_id(self, random_bytes: RandomBytes = default_random) -> DeviceIdentity:
        return DeviceIdentity(self.seed, take_random(random_bytes, INSTALL_ID_BYTES))

    @functools.cached_property  # derived once, as for UserIdentity
    def signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    @functools.cached_property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @functools.cached_property
    def device_id(self) -> bytes:
        return device_id_of(self.public_key)

    @property
    def box_private_key(self) -> PrivateKey:
        """The X25519 private key derived from the Ed25519 key (for authenticated boxes)."""
        return self.signing_key.to_curve25519_private_key()

    @property
    def box_public_key(self) -> PublicKey:
        return self.box_private_key.public_key

    def __repr__(self) -> str:
        return f"DeviceIdentity({ids.short_id(self.device_id)})"


# --- key files --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _KeyFile(Record):
    v: int
    kind: str
    seed: bytes

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("kind", Text(16)),
        ("seed", Bin.exact(SEED_BYTES)),
    )
    MAX_BYTES: ClassVar[int] = 128


@dataclasses.dataclass(frozen=True)
class _InstallFile(Record):
    """The install id, bound to the key file's (device, inode, ctime) as it was when written.

    A restore from backup or a copy gives the key file a new ctime (which no program can set),
    so the binding no longer matches and the device takes a new install id.
    """

    v: int
    install_id: bytes
    key_dev: int
    key_ino: int
    key_ctime_ns: int

    SCHEMA = (
        ("v", UInt(max_value=255, min_value=1)),
        ("install_id", Bin.exact(INSTALL_ID_BYTES)),
        ("key_dev", UInt()),
        ("key_ino", UInt()),
        ("key_ctime_ns", UInt()),
    )
    MAX_BYTES: ClassVar[int] = 128


def install_file_of(key_path: Path) -> Path:
    """Where the install id of the device key at ``key_path`` lives."""
    key_path = Path(key_path)
    return key_path.with_name(key_path.name + ".install")


def _write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600, durable."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink()
            raise
        os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from exc


def _read_private(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise KeyFileError(
                f"key file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"run `chmod 600 {path}`"
            )
        return os.read(fd, max_bytes + 1), info
    finally:
        os.close(fd)


def _read_key_file(path: Path, kind: str) -> tuple[bytes, os.stat_result]:
    data, info = _read_private(path, _KeyFile.MAX_BYTES)
    try:
        record = _KeyFile.decode(data)
    except DecodeError as exc:
        raise KeyFileError(f"key file {path} is corrupt: {exc.message}") from exc
    if record.kind != kind:
        raise KeyFileError(f"{path} holds a {record.kind} key, not a {kind} key")
    return record.seed, info


def _bind_install_id(key_path: Path, install_id: bytes) -> None:
    info = os.stat(key_path)
    record = _InstallFile(1, install_id, info.st_dev, info.st_ino, info.st_ctime_ns)
    _write_private(install_file_of(key_path), record.encode())


def _bound_install_id(key_path: Path, key_info: os.stat_result) -> bytes | None:
    """The recorded install id if it is bound to this very key file, else None."""
    try:
        data, _ = _read_private(install_file_of(key_path), _InstallFile.MAX_BYTES)
        record = _InstallFile.decode(data)
    except (KeyFileError, DecodeError):
        return None  # missing or damaged: the device simply takes a new install id
    binding = (key_info.st_dev, key_info.st_ino, key_info.st_ctime_ns)
    if (record.key_dev, record.key_ino, record.key_ctime_ns) != binding:
        return None
    return record.install_id


def save_device_identity(path: Path, device: DeviceIdentity) -> None:
    """Write the device key file (and its install id beside it) atomically with mode 0600."""
    _write_private(path, _KeyFile(1, "device", device.seed).encode())
    _bind_install_id(path, device.install_id)


def load_device_identity(path: Path, random_bytes: RandomBytes = default_random) -> DeviceIdentity:
    """Read the device key; a restored or copied key file gets (and keeps) a new install id."""
    seed, info = _read_key_file(path, "device")
    install_id = _bound_install_id(path, info)
    if install_id is None:
        install_id = take_random(random_bytes, INSTALL_ID_BYTES)
        _bind_install_id(path, install_id)
    return DeviceIdentity(seed, install_id)


def save_user_identity(path: Path, user: UserIdentity) -> None:
    _write_private(path, _KeyFile(1, "user", user.seed).encode())


def load_user_identity(path: Path) -> UserIdentity:
    seed, _ = _read_key_file(path, "user")
    return UserIdentity(seed)


@dataclasses.dataclass(frozen=True)
class CertifiedDevice:
    """A device identity together with its certificate: what signs chain entries and envelopes."""

    identity: DeviceIdentity
    certificate: DeviceCertificate

    def __post_init__(self) -> None:
        if self.certificate.device_key != self.identity.public_key:
            raise BadCertificate("the certificate is for another device key")

    @property
    def device_id(self) -> bytes:
        return self.identity.device_id
