"""Known answers: published vectors for the primitives, and our own for the v1 formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.chunking import Chunker, ChunkingParams, seed_for
from storage.hashing import block_id_of, chunk_id_of
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.manifest import decode_manifest, encode_manifest
from storage.padding import padded_size, padme
from storage.sealing import BlockType, open_block, seal_block

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())


def repeating_input(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


@pytest.mark.parametrize("case", load("nist_aes_gcm.json")["cases"], ids=lambda c: c["name"])
def test_aes_256_gcm_matches_nist_vectors(case: dict[str, str]) -> None:
    h = bytes.fromhex
    aead = AESGCM(h(case["key"]))
    sealed = aead.encrypt(h(case["iv"]), h(case["plaintext"]), h(case["aad"]) or None)
    assert sealed == h(case["ciphertext"] + case["tag"])
    assert aead.decrypt(h(case["iv"]), sealed, h(case["aad"]) or None) == h(case["plaintext"])


BLAKE3 = load("blake3_official.json")


@pytest.mark.parametrize("case", BLAKE3["cases"], ids=lambda c: f"len{c['input_len']}")
def test_blake3_keyed_hash_and_derive_key_match_official_vectors(case: dict[str, Any]) -> None:
    data = repeating_input(case["input_len"])
    keyed = blake3.blake3(data, key=BLAKE3["key"].encode())
    assert keyed.digest(length=131).hex() == case["keyed_hash"]
    # Our chunk ids are exactly BLAKE3 keyed_hash, default length.
    assert chunk_id_of(BLAKE3["key"].encode(), data).hex() == case["keyed_hash"][:64]
    derived = blake3.blake3(data, derive_key_context=BLAKE3["context_string"])
    assert derived.digest(length=131).hex() == case["derive_key"]


OURS = load("storage_v1.json")
SHARE = ShareKeys(
    bytes.fromhex(OURS["share_id"]),
    bytes.fromhex(OURS["chunking_key"]),
    bytes.fromhex(OURS["chunk_id_key"]),
)
KEY = SealingKey(OURS["epoch"], bytes.fromhex(OURS["sealing_key"]))


def test_subkeys_and_seed_match_vectors() -> None:
    assert KEY.body_mac_key.hex() == OURS["body_mac_key"]
    assert KEY.block_kdf_key.hex() == OURS["block_kdf_key"]
    assert seed_for(SHARE.chunking_key) == OURS["fastcdc_seed"]


def test_padding_matches_vectors() -> None:
    assert {str(n): padme(int(n)) for n in OURS["padme"]} == OURS["padme"]
    assert {str(n): padded_size(int(n)) for n in OURS["padded_size"]} == OURS["padded_size"]


@pytest.mark.parametrize("which", ["chunking_small", "chunking_default"])
def test_cut_points_match_vectors(which: str) -> None:
    vector = OURS[which]
    label = vector["input"].split("'")[1]
    size = int(vector["input"].rsplit(", ", 1)[1].split()[0]) * (
        1024 * 1024 if "MiB" in vector["input"] else 1
    )
    data = blake3.blake3(label.encode()).digest(length=size)
    params = ChunkingParams.from_dict(vector["params"])
    assert Chunker(SHARE.chunking_key, params).cut_points(data) == vector["cut_points"]


@pytest.mark.parametrize("vector", OURS["blocks"], ids=lambda v: v["name"])
def test_blocks_open_and_reseal_to_the_vectors(vector: dict[str, Any]) -> None:
    sealed = bytes.fromhex(vector["sealed"])
    plain = bytes.fromhex(vector["plaintext"])
    block_type = BlockType(vector["block_type"])
    assert block_id_of(sealed).hex() == vector["block_id"]
    assert chunk_id_of(SHARE.chunk_id_key, plain).hex() == vector["chunk_id"]
    opened = open_block(
        SHARE, Keyring([KEY]), sealed, expected_type=block_type, block_id=block_id_of(sealed)
    )
    assert opened == plain
    # Sealing is deterministic. (The compressible vector also pins zstd's output for this level:
    # a zstd release that changes it changes that block's bytes, never its validity.)
    assert seal_block(SHARE, KEY, block_type, plain).data == sealed
    if block_type is BlockType.MANIFEST:
        assert encode_manifest(decode_manifest(plain)) == plain
