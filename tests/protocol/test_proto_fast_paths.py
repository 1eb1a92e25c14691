"""The shortcuts the relay's append path relies on give exactly the slow paths' answers."""

from __future__ import annotations

import dataclasses
import os

import pytest

from protocol.envelope import Envelope, seal_envelope, verify_envelope_signature
from protocol.errors import BadCertificate, BadSignature, DecodeError
from protocol.keys import DeviceIdentity, UserIdentity
from protocol.signing import Purpose, digest, verify


def _envelope(
    update: bytes, device: DeviceIdentity | None = None
) -> tuple[Envelope, DeviceIdentity]:
    device = device or DeviceIdentity.generate()
    env = seal_envelope(
        device,
        share=os.urandom(16),
        epoch=0,
        height=0,
        counter=1,
        prev=bytes(32),
        seen={},
        blocks=(os.urandom(32),),
        update=update,
        metadata_key=os.urandom(32),
    )
    return env, device


@pytest.mark.parametrize("size", [1, 300, 70_000])
def test_a_decoded_envelope_signs_and_hashes_its_own_bytes(size: int) -> None:
    made, device = _envelope(os.urandom(size))
    raw = made.encode()
    decoded = Envelope.decode(raw)
    zeroed = dataclasses.replace(decoded, sig=bytes(64)).encode()
    assert decoded.signed_bytes() == made.signed_bytes() == zeroed
    assert decoded.encode() == raw
    assert decoded.envelope_hash == made.envelope_hash == digest(Purpose.ENVELOPE_HASH, raw)
    verify_envelope_signature(decoded, device.public_key)
    # A changed copy is encoded afresh, never from the original's bytes.
    other = dataclasses.replace(decoded, payload=decoded.payload[:-1] + b"\x00")
    assert other.encode() != raw
    with pytest.raises(BadSignature):
        verify_envelope_signature(other, device.public_key)


def test_a_certificate_checked_once_is_still_checked_when_altered() -> None:
    user = UserIdentity.generate()
    cert = user.certify(DeviceIdentity.generate().public_key, "laptop", 1)
    assert cert.verify(user.public_key) is cert
    assert cert.verify(user.public_key) is cert  # remembered
    renamed = dataclasses.replace(cert, name="not-laptop")
    with pytest.raises(BadCertificate):
        renamed.verify(user.public_key)
    with pytest.raises(BadCertificate):
        dataclasses.replace(cert, sig=bytes(64)).verify()
    with pytest.raises(BadCertificate):
        cert.verify(UserIdentity.generate().public_key)


def test_a_remembered_signature_passes_only_for_the_exact_bytes_it_signed() -> None:
    env, device = _envelope(b"update")
    key = device.public_key
    verify_envelope_signature(env, key)  # verified once: remembered
    verify_envelope_signature(env, key)  # and again, from the memo
    other, _ = _envelope(b"other update", device)
    # The remembered signature on other bytes, and other bytes under the remembered key: refused.
    with pytest.raises(BadSignature):
        verify_envelope_signature(dataclasses.replace(other, sig=env.sig), key)
    with pytest.raises(BadSignature):
        verify_envelope_signature(dataclasses.replace(env, payload=other.payload), key)
    with pytest.raises(BadSignature):
        verify(DeviceIdentity.generate().public_key, Purpose.ENVELOPE, env.signed_bytes(), env.sig)
    with pytest.raises(BadSignature):
        verify(key, Purpose.AUTH, env.signed_bytes(), env.sig)


def test_decoding_the_same_bytes_again_gives_the_same_record_and_bad_bytes_fail_each_time() -> None:
    env, _ = _envelope(b"update")
    raw = env.encode()
    assert Envelope.decode(raw) is Envelope.decode(bytearray(raw))
    broken = raw[:-1] + bytes([raw[-1] ^ 1])  # still decodes: a signature byte flipped
    assert Envelope.decode(broken).sig != env.sig
    for _ in range(2):
        with pytest.raises(DecodeError):
            Envelope.decode(raw + b"\x00")  # trailing bytes: not canonical
