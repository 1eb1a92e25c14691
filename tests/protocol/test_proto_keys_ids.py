"""Printable ids, identities, certificates, revocations and key files."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ids
from protocol.errors import BadCertificate, BadCode, KeyFileError
from protocol.keys import (
    DeviceCertificate,
    DeviceIdentity,
    DeviceRevocation,
    UserIdentity,
    load_device_identity,
    load_user_identity,
    save_device_identity,
    save_user_identity,
)

NOW_MS = 1_764_000_000_000


def seeded_random(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def test_id_round_trip_and_shape() -> None:
    raw = bytes(range(32))
    text = ids.format_id(raw)
    assert len(text) == 63
    assert [len(g) for g in text.split("-")] == [7] * 8
    assert ids.parse_id(text) == raw
    assert ids.parse_id(text.lower().replace("-", " ")) == raw


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(min_size=32, max_size=32), pos=st.integers(0, 55), delta=st.integers(1, 31))
def test_every_single_character_typo_is_detected(raw: bytes, pos: int, delta: int) -> None:
    chars = ids.format_id(raw).replace("-", "")
    wrong = ids.ALPHABET[(ids.ALPHABET.index(chars[pos]) + delta) % 32]
    typo = chars[:pos] + wrong + chars[pos + 1 :]
    with pytest.raises(BadCode):
        ids.parse_id(typo)


def test_id_refuses_wrong_length_and_characters() -> None:
    text = ids.format_id(bytes(32))
    with pytest.raises(BadCode, match="letters"):
        ids.parse_id(text[:-1])
    with pytest.raises(BadCode, match="cannot appear"):
        ids.parse_id(text.replace("A", "!", 1))


def test_confusable_digits_are_read_as_letters() -> None:
    raw = bytes.fromhex("37" * 32)
    text = ids.format_id(raw)
    assert ids.parse_id(text.replace("O", "0").replace("I", "1").replace("B", "8")) == raw


def test_checked_codes_round_trip() -> None:
    raw = seeded_random(3)(20)
    code = ids.encode_code(raw, 8, 6)
    assert ids.decode_code(code, 20, 8, "code") == raw
    with pytest.raises(BadCode, match="typo"):
        ids.decode_code(code.replace(code[0], "Z" if code[0] != "Z" else "Y", 1), 20, 8, "code")


def test_identities_are_deterministic_from_the_random_source() -> None:
    a = DeviceIdentity.generate(seeded_random(7))
    b = DeviceIdentity.generate(seeded_random(7))
    assert a == b
    assert len(a.device_id) == 32
    assert len(a.install_id) == 16
    assert bytes(a.box_public_key) == bytes(a.box_private_key.public_key)
    assert "seed" not in repr(a)
    assert a.seed.hex() not in repr(a)


def test_certificate_round_trip_and_verify() -> None:
    rand = seeded_random(1)
    user, device = UserIdentity.generate(rand), DeviceIdentity.generate(rand)
    cert = user.certify(device.public_key, "laptop", NOW_MS)
    decoded = DeviceCertificate.decode(cert.encode())
    assert decoded == cert
    assert decoded.verify(user.public_key).device_id == device.device_id
    assert cert.user_id == user.user_id


def test_forged_certificate_is_refused() -> None:
    rand = seeded_random(2)
    user, mallory, device = (UserIdentity.generate(rand) for _ in range(3))
    cert = user.certify(device.public_key, "laptop", NOW_MS)
    forged = dataclasses.replace(cert, name="evil")
    with pytest.raises(BadCertificate, match="does not verify"):
        forged.verify()
    with pytest.raises(BadCertificate, match="another user"):
        cert.verify(mallory.public_key)


def test_revocation_round_trip_and_verify() -> None:
    rand = seeded_random(4)
    user, other = UserIdentity.generate(rand), UserIdentity.generate(rand)
    rev = user.revoke(bytes(32), NOW_MS)
    assert DeviceRevocation.decode(rev.encode()).verify(user.public_key) == rev
    with pytest.raises(BadCertificate):
        dataclasses.replace(rev, user_key=other.public_key).verify()


def test_device_key_file_is_0600_and_keeps_install_id(tmp_path: Path) -> None:
    device = DeviceIdentity.generate(seeded_random(5))
    path = tmp_path / "device.key"
    save_device_identity(path, device)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_device_identity(path, seeded_random(6)) == device
    assert load_device_identity(path, seeded_random(6)) == device


def test_restored_key_file_gets_a_new_install_id(tmp_path: Path) -> None:
    device = DeviceIdentity.generate(seeded_random(5))
    path = tmp_path / "device.key"
    save_device_identity(path, device)
    backup = tmp_path / "backup.key"
    shutil.copy2(path, backup)
    path.unlink()
    shutil.copy2(backup, path)  # a restore: same bytes, another inode
    restored = load_device_identity(path, seeded_random(9))
    assert restored.seed == device.seed
    assert restored.install_id != device.install_id
    assert load_device_identity(path, seeded_random(10)) == restored  # and it sticks


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "user.key"
    user = UserIdentity.generate(seeded_random(1))
    save_user_identity(path, user)
    assert load_user_identity(path) == user
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_user_identity(path)


def test_corrupt_or_wrong_kind_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "user.key"
    save_user_identity(path, UserIdentity.generate(seeded_random(1)))
    with pytest.raises(KeyFileError, match="not a device key"):
        load_device_identity(path)
    path.write_bytes(b"\x93garbage")
    with pytest.raises(KeyFileError, match="corrupt"):
        load_user_identity(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_user_identity(tmp_path / "missing.key")


def test_unwritable_key_path_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot write"):
        save_user_identity(
            tmp_path / "missing" / "user.key", UserIdentity.generate(seeded_random(1))
        )
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(KeyFileError, match="cannot write"):
        save_device_identity(blocker / "device.key", DeviceIdentity.generate(seeded_random(1)))
