"""Write tests/vectors/driftsync_v1.json: fixed keys and inputs, and the exact bytes they give.

Run from the repository root only when the wire format changes on purpose (then say so in
docs/protocol.md): ``.venv/bin/python tests/vectors/generate_vectors.py``. The tests check the
implementation against the file and decode every vector independently of ``protocol``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from protocol.auth import answer_challenge
from protocol.chain import MembershipChain, Role, make_add_user, make_genesis
from protocol.envelope import seal_envelope
from protocol.frames import encode_frame
from protocol.ids import encode_code, format_id
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity
from protocol.keyschedule import KeyRing, epoch_key_hash, lan_token
from protocol.messages import Hello
from protocol.recovery import RecoveryBlob, wrap_user_key
from protocol.signing import Purpose, sign

OUT = Path(__file__).with_name("driftsync_v1.json")
NOW_MS = 1_764_000_000_000


def fixed(label: str, size: int) -> bytes:
    """Deterministic 'random' bytes, reproducible anywhere: SHA-256 of a label, stretched."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"driftsync test vector {label} {counter}".encode()).digest()
        counter += 1
    return out[:size]


def queue(*chunks: bytes) -> Any:
    """A random source that hands out exactly these chunks, in order."""
    pending = list(chunks)

    def take(size: int) -> bytes:
        chunk = pending.pop(0)
        assert len(chunk) == size, (len(chunk), size)
        return chunk

    return take


def build() -> dict[str, Any]:
    user_seed, device_seed = fixed("user seed", 32), fixed("device seed", 32)
    install_id = fixed("install id", 16)
    user = UserIdentity(user_seed)
    device = DeviceIdentity(device_seed, install_id)
    cert = user.certify(device.public_key, "laptop", NOW_MS)
    signer = CertifiedDevice(device, cert)
    editor = UserIdentity(fixed("editor seed", 32))

    share_id = fixed("share id", 16)
    epoch0 = fixed("epoch key 0", 32)
    ring = KeyRing(share_id, (epoch0,))
    keys0 = ring.epoch(0)
    genesis = make_genesis(signer, share_id, keys0.key_hash, NOW_MS)
    chain = MembershipChain(genesis)
    add = make_add_user(chain, signer, editor.public_key, Role.EDITOR, NOW_MS + 1)
    chain.append(add)

    nonce = fixed("envelope nonce", 24)
    update = b"a pycrdt update"
    block_a, block_b = fixed("block a", 32), fixed("block b", 32)
    other_device = fixed("other device", 32)
    envelope = seal_envelope(
        device,
        share=share_id,
        epoch=0,
        height=chain.height,
        counter=1,
        prev=bytes(32),
        seen={other_device: 4},
        blocks=[block_b, block_a],
        update=update,
        metadata_key=keys0.metadata_key,
        random_bytes=queue(nonce),
    )

    server_nonce, client_nonce = fixed("server nonce", 32), fixed("client nonce", 32)
    auth = answer_challenge(
        signer, "https://relay.example.org", server_nonce, NOW_MS, queue(client_nonce)
    )

    recovery_raw = fixed("recovery code", 20)
    recovery_code = encode_code(recovery_raw, 8, 6)
    recovery_nonce = fixed("recovery nonce", 24)
    blob: RecoveryBlob = wrap_user_key(user, recovery_code, queue(recovery_nonce))

    hello = Hello(min_version=1, max_version=1, agent="drift/0.1")
    sig_message = b"hello, driftsync"

    return {
        "about": (
            "driftsync protocol v1 known-answer vectors; all byte strings are hex. "
            "Regenerate with tests/vectors/generate_vectors.py only for a deliberate format change."
        ),
        "identities": {
            "user_seed": user_seed.hex(),
            "user_public_key": user.public_key.hex(),
            "user_id": user.user_id.hex(),
            "user_id_text": format_id(user.user_id),
            "device_seed": device_seed.hex(),
            "device_public_key": device.public_key.hex(),
            "device_x25519_public_key": bytes(device.box_public_key).hex(),
            "device_id": device.device_id.hex(),
            "device_id_text": format_id(device.device_id),
            "install_id": install_id.hex(),
        },
        "signature": {
            "seed": device_seed.hex(),
            "purpose": "envelope",
            "message": sig_message.hex(),
            "signature": sign(device.signing_key, Purpose.ENVELOPE, sig_message).hex(),
        },
        "device_certificate": {
            "name": "laptop",
            "issued_ms": NOW_MS,
            "encoded": cert.encode().hex(),
        },
        "chain": {
            "share_id": share_id.hex(),
            "editor_public_key": editor.public_key.hex(),
            "genesis": genesis.encode().hex(),
            "genesis_hash": genesis.entry_hash.hex(),
            "add_user": add.encode().hex(),
            "add_user_hash": add.entry_hash.hex(),
        },
        "key_schedule": {
            "share_id": share_id.hex(),
            "epoch_key_0": epoch0.hex(),
            "epoch_key_hash_0": epoch_key_hash(share_id, 0, epoch0).hex(),
            "chunking_key": ring.share_keys.chunking_key.hex(),
            "chunk_id_key": ring.share_keys.chunk_id_key.hex(),
            "lan_discovery_key": ring.share_keys.lan_discovery_key.hex(),
            "sealing_key_0": keys0.sealing_key.hex(),
            "metadata_key_0": keys0.metadata_key.hex(),
            "lan_token_time_ms": NOW_MS,
            "lan_token": lan_token(ring.share_keys.lan_discovery_key, NOW_MS).hex(),
        },
        "envelope": {
            "update": update.hex(),
            "nonce": nonce.hex(),
            "encoded": envelope.encode().hex(),
            "envelope_hash": envelope.envelope_hash.hex(),
        },
        "auth_response": {
            "origin": "https://relay.example.org",
            "server_nonce": server_nonce.hex(),
            "client_nonce": client_nonce.hex(),
            "time_ms": NOW_MS,
            "encoded": auth.encode().hex(),
        },
        "recovery": {
            "code": recovery_code,
            "code_bytes": recovery_raw.hex(),
            "nonce": recovery_nonce.hex(),
            "encoded": blob.encode().hex(),
        },
        "frame": {
            "message": hello.encode().hex(),
            "frame": encode_frame(hello.encode()).hex(),
        },
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=2, sort_keys=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
