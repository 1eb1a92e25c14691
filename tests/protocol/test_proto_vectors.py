"""Known-answer tests: RFC 8032 and our vectors, checked by a decoder written without protocol.

The independent half of this file uses only msgpack, hashlib and libsodium primitives, the way
another implementation would read docs/protocol.md; the other half checks that ``protocol``
reproduces every byte of tests/vectors/driftsync_v1.json.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt
from nacl.signing import SigningKey, VerifyKey

from protocol.auth import AuthResponse, verify_auth
from protocol.chain import ChainEntry, verify_chain
from protocol.envelope import Envelope, open_envelope, verify_envelope
from protocol.ids import parse_id
from protocol.keys import DeviceCertificate
from protocol.recovery import RecoveryBlob, unwrap_user_key

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
OURS = json.loads((VECTORS / "driftsync_v1.json").read_text())


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- an independent reader of the format -----------------------------------------------------


def domain(purpose: str, message: bytes) -> bytes:
    return b"driftsync/v1/" + purpose.encode() + b"\x00" + message


def unpack_map(data: bytes) -> dict[str, Any]:
    obj = msgpack.unpackb(data, raw=False)
    assert isinstance(obj, dict)
    assert msgpack.packb(obj, use_bin_type=True) == data, "not in canonical form"
    return obj


def without_sig(obj: dict[str, Any], field: str = "sig") -> bytes:
    return msgpack.packb({**obj, field: bytes(len(obj[field]))}, use_bin_type=True)


def check_signed(obj: dict[str, Any], purpose: str, public_key: bytes) -> None:
    VerifyKey(public_key).verify(domain(purpose, without_sig(obj)), obj["sig"])


def luhn32(chars: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    factor, total = 1, 0
    for ch in chars:
        addend = factor * alphabet.index(ch)
        factor = 3 - factor
        total += addend // 32 + addend % 32
    return alphabet[(32 - total % 32) % 32]


def printable_id(raw: bytes) -> str:
    chars = base64.b32encode(raw).decode().rstrip("=")
    checked = "".join(chars[i : i + 13] + luhn32(chars[i : i + 13]) for i in range(0, 52, 13))
    return "-".join(checked[i : i + 7] for i in range(0, 56, 7))


def kdf(parent: bytes, label: str, context: bytes) -> bytes:
    return hashlib.blake2b(
        label.encode() + b"\x00" + context, digest_size=32, key=parent, person=b"driftsync/v1/kdf"
    ).digest()


# --- RFC 8032 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    json.loads((VECTORS / "rfc8032_ed25519.json").read_text())["vectors"],
    ids=lambda v: v["name"],
)
def test_rfc8032_section_7_1(vector: dict[str, str]) -> None:
    key = SigningKey(h(vector["secret_key"]))
    assert bytes(key.verify_key) == h(vector["public_key"])
    assert key.sign(h(vector["message"])).signature == h(vector["signature"])
    VerifyKey(h(vector["public_key"])).verify(h(vector["message"]), h(vector["signature"]))


# --- our vectors, read independently ---------------------------------------------------------


def test_identities_independently() -> None:
    v = OURS["identities"]
    user_pk = bytes(SigningKey(h(v["user_seed"])).verify_key)
    device_pk = bytes(SigningKey(h(v["device_seed"])).verify_key)
    assert user_pk == h(v["user_public_key"])
    assert device_pk == h(v["device_public_key"])
    assert hashlib.sha256(domain("user-id", user_pk)).digest() == h(v["user_id"])
    assert hashlib.sha256(domain("device-id", device_pk)).digest() == h(v["device_id"])
    assert printable_id(h(v["device_id"])) == v["device_id_text"]
    assert printable_id(h(v["user_id"])) == v["user_id_text"]
    assert parse_id(v["device_id_text"]) == h(v["device_id"])


def test_domain_separated_signature_independently() -> None:
    v = OURS["signature"]
    expected = SigningKey(h(v["seed"])).sign(domain(v["purpose"], h(v["message"]))).signature
    assert expected == h(v["signature"])


def test_device_certificate_independently() -> None:
    v = OURS["device_certificate"]
    cert = unpack_map(h(v["encoded"]))
    assert list(cert) == ["v", "user_key", "device_key", "name", "issued_ms", "sig"]
    assert cert["v"] == 1
    assert cert["user_key"] == h(OURS["identities"]["user_public_key"])
    assert cert["device_key"] == h(OURS["identities"]["device_public_key"])
    assert (cert["name"], cert["issued_ms"]) == (v["name"], v["issued_ms"])
    check_signed(cert, "device-certificate", cert["user_key"])


def test_chain_independently() -> None:
    v = OURS["chain"]
    genesis, add = unpack_map(h(v["genesis"])), unpack_map(h(v["add_user"]))
    assert list(genesis) == [
        "v", "share", "height", "prev", "kind", "time_ms", "signer", "user_key", "role",
        "cutoffs", "epoch", "key_hash", "revocation", "sig",
    ]  # fmt: skip
    assert genesis["kind"] == "genesis"
    assert (genesis["height"], genesis["prev"], genesis["epoch"]) == (0, bytes(32), 0)
    assert genesis["share"] == h(v["share_id"])
    assert genesis["key_hash"] == h(OURS["key_schedule"]["epoch_key_hash_0"])
    assert genesis["user_key"] == genesis["signer"]["user_key"]
    check_signed(genesis, "chain-entry", genesis["signer"]["device_key"])
    genesis_hash = hashlib.sha256(domain("chain-entry-hash", h(v["genesis"]))).digest()
    assert genesis_hash == h(v["genesis_hash"])
    assert (add["kind"], add["height"], add["prev"]) == ("add_user", 1, genesis_hash)
    assert (add["user_key"], add["role"]) == (h(v["editor_public_key"]), "editor")
    check_signed(add, "chain-entry", add["signer"]["device_key"])
    assert hashlib.sha256(domain("chain-entry-hash", h(v["add_user"]))).digest() == h(
        v["add_user_hash"]
    )


def test_key_schedule_independently() -> None:
    v = OURS["key_schedule"]
    share, k0 = h(v["share_id"]), h(v["epoch_key_0"])
    epoch0 = share + (0).to_bytes(8, "big")
    assert hashlib.sha256(domain("epoch-key-hash", epoch0 + k0)).digest() == h(
        v["epoch_key_hash_0"]
    )
    assert kdf(k0, "chunking", share) == h(v["chunking_key"])
    assert kdf(k0, "chunk-id", share) == h(v["chunk_id_key"])
    assert kdf(k0, "lan-discovery", share) == h(v["lan_discovery_key"])
    assert kdf(k0, "sealing", epoch0) == h(v["sealing_key_0"])
    assert kdf(k0, "metadata", epoch0) == h(v["metadata_key_0"])
    hour = (v["lan_token_time_ms"] // 3_600_000).to_bytes(8, "big")
    token = hashlib.blake2b(
        hour, digest_size=8, key=h(v["lan_discovery_key"]), person=b"driftsync-lan-v1"
    ).digest()
    assert token == h(v["lan_token"])


def test_envelope_independently() -> None:
    v = OURS["envelope"]
    env = unpack_map(h(v["encoded"]))
    assert list(env) == ["header", "payload", "sig"]
    header = env["header"]
    assert list(header) == [
        "v", "share", "epoch", "height", "device", "counter", "prev", "seen", "blocks", "nonce",
    ]  # fmt: skip
    assert header["device"] == h(OURS["identities"]["device_id"])
    assert (header["v"], header["counter"], header["prev"]) == (1, 1, bytes(32))
    assert header["blocks"] == sorted(header["blocks"])
    assert all(len(pair) == 2 for pair in header["seen"])
    check_signed(env, "envelope", h(OURS["identities"]["device_public_key"]))
    ad = msgpack.packb(header, use_bin_type=True)
    key = h(OURS["key_schedule"]["metadata_key_0"])
    update = crypto_aead_xchacha20poly1305_ietf_decrypt(env["payload"], ad, header["nonce"], key)
    assert update == h(v["update"])
    env_hash = hashlib.sha256(domain("envelope-hash", h(v["encoded"]))).digest()
    assert env_hash == h(v["envelope_hash"])


def test_auth_response_independently() -> None:
    v = OURS["auth_response"]
    auth = unpack_map(h(v["encoded"]))
    assert list(auth) == [
        "v", "origin", "server_nonce", "client_nonce", "time_ms", "certificate", "sig",
    ]  # fmt: skip
    assert auth["origin"] == v["origin"]
    assert (auth["server_nonce"], auth["client_nonce"]) == (
        h(v["server_nonce"]),
        h(v["client_nonce"]),
    )
    check_signed(auth, "auth", auth["certificate"]["device_key"])


def test_recovery_blob_independently() -> None:
    v = OURS["recovery"]
    blob = unpack_map(h(v["encoded"]))
    key = hashlib.blake2b(h(v["code_bytes"]), digest_size=32, person=b"driftsync/v1/rec").digest()
    ad = b"driftsync/v1/recovery\x00" + blob["user_id"]
    seed = crypto_aead_xchacha20poly1305_ietf_decrypt(blob["sealed"], ad, blob["nonce"], key)
    assert seed == h(OURS["identities"]["user_seed"])
    chars = v["code"].replace("-", "")
    body = "".join(chars[i : i + 8] for i in range(0, len(chars), 9))
    assert all(luhn32(chars[i : i + 8]) == chars[i + 8] for i in range(0, len(chars), 9))
    assert base64.b32decode(body) == h(v["code_bytes"])


def test_frame_independently() -> None:
    v = OURS["frame"]
    frame, message = h(v["frame"]), h(v["message"])
    assert int.from_bytes(frame[:4], "big") == len(message)
    assert frame[4:] == message
    hello = unpack_map(message)
    assert list(hello)[:2] == ["type", "v"]
    assert hello["type"] == "hello"


# --- and the implementation reproduces and accepts them --------------------------------------


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "generate_vectors", VECTORS / "generate_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_implementation_reproduces_every_byte() -> None:
    assert _generator().build() == OURS


def test_implementation_accepts_the_vectors() -> None:
    cert = DeviceCertificate.decode(h(OURS["device_certificate"]["encoded"])).verify()
    chain = verify_chain(
        [
            ChainEntry.decode(h(OURS["chain"]["genesis"])),
            ChainEntry.decode(h(OURS["chain"]["add_user"])),
        ]
    )
    assert chain.genesis_hash == h(OURS["chain"]["genesis_hash"])
    envelope = Envelope.decode(h(OURS["envelope"]["encoded"]))
    verify_envelope(envelope, cert, chain, None)
    metadata_key = h(OURS["key_schedule"]["metadata_key_0"])
    assert open_envelope(envelope, metadata_key) == h(OURS["envelope"]["update"])
    auth = AuthResponse.decode(h(OURS["auth_response"]["encoded"]))
    verify_auth(
        auth,
        origin=OURS["auth_response"]["origin"],
        server_nonce=h(OURS["auth_response"]["server_nonce"]),
        now_ms=OURS["auth_response"]["time_ms"],
    )
    blob = RecoveryBlob.decode(h(OURS["recovery"]["encoded"]))
    assert unwrap_user_key(blob, OURS["recovery"]["code"]).seed == h(
        OURS["identities"]["user_seed"]
    )
