"""Regenerate storage_v1.json: `python tests/storage/vectors/generate.py`.

The file pins the v1 formats byte for byte. Regenerate only on a deliberate format change (with a
new format version); test_storage_vectors.py fails on any drift.
"""

from __future__ import annotations

import json
from pathlib import Path

import blake3

from storage.chunking import Chunker, ChunkingParams, seed_for
from storage.hashing import BlockId, ChunkId, chunk_id_of
from storage.keys import SealingKey, ShareKeys
from storage.manifest import Manifest, ManifestEntry, PartEntry, PartsManifest, encode_manifest
from storage.padding import padded_size, padme
from storage.sealing import BlockType, seal_block

SHARE = ShareKeys(b"driftsync test share", bytes(range(32)), bytes(range(32, 64)))
KEY = SealingKey(7, bytes(range(64, 96)))
SMALL = ChunkingParams(min_size=256, avg_size=1024, max_size=4096)


def xof(label: str, size: int) -> bytes:
    return blake3.blake3(label.encode()).digest(length=size)


def build() -> dict[str, object]:
    blocks = []
    plaintexts = {
        "short data": (BlockType.DATA, b"hello, driftsync\n"),
        "compressible data": (BlockType.DATA, b"driftsync " * 1000),
        "random data": (BlockType.DATA, xof("driftsync random chunk", 6000)),
    }
    a, b = b"driftsync first chunk " * 20, b"driftsync second chunk " * 30
    manifest = Manifest(
        len(a) + len(b),
        blake3.blake3(a + b, key=SHARE.chunk_id_key).digest(),
        (
            ManifestEntry(chunk_id_of(SHARE.chunk_id_key, a), BlockId(bytes(32)), 7, len(a)),
            ManifestEntry(chunk_id_of(SHARE.chunk_id_key, b), BlockId(bytes([1]) * 32), 6, len(b)),
        ),
    )
    plaintexts["manifest"] = (BlockType.MANIFEST, encode_manifest(manifest))
    parts = PartsManifest(
        2**40 + 5,
        blake3.blake3(b"stand-in for a 1 TiB file", key=SHARE.chunk_id_key).digest(),
        (
            PartEntry(bytes([2]) * 32, BlockId(bytes([3]) * 32), 7, 2**40),
            PartEntry(bytes([4]) * 32, BlockId(bytes([5]) * 32), 6, 5),
        ),
    )
    plaintexts["parts manifest"] = (BlockType.MANIFEST, encode_manifest(parts))
    for name, (block_type, plain) in plaintexts.items():
        sealed = seal_block(SHARE, KEY, block_type, plain)
        blocks.append(
            {
                "name": name,
                "block_type": int(block_type),
                "plaintext": plain.hex(),
                "chunk_id": ChunkId(chunk_id_of(SHARE.chunk_id_key, plain)).hex(),
                "block_id": sealed.block_id.hex(),
                "sealed": sealed.data.hex(),
            }
        )
    chunk_input = xof("driftsync chunking vector", 64 * 1024)
    big_input = xof("driftsync chunking vector (default parameters)", 12 * 1024 * 1024)
    return {
        "_comment": "driftsync storage format v1 vectors; see docs/storage.md. All binary as hex.",
        "share_id": SHARE.share_id.hex(),
        "chunking_key": SHARE.chunking_key.hex(),
        "chunk_id_key": SHARE.chunk_id_key.hex(),
        "epoch": KEY.epoch,
        "sealing_key": KEY.key.hex(),
        "body_mac_key": KEY.body_mac_key.hex(),
        "block_kdf_key": KEY.block_kdf_key.hex(),
        "fastcdc_seed": seed_for(SHARE.chunking_key),
        "padme": {str(n): padme(n) for n in (0, 1, 2, 9, 100, 1000, 4097, 65600, 1048641)},
        "padded_size": {str(n): padded_size(n) for n in (65, 4096, 4097, 4194369)},
        "chunking_small": {
            "params": SMALL.to_dict(),
            "input": "BLAKE3 XOF of 'driftsync chunking vector', 65536 bytes",
            "cut_points": Chunker(SHARE.chunking_key, SMALL).cut_points(chunk_input),
        },
        "chunking_default": {
            "params": ChunkingParams().to_dict(),
            "input": "BLAKE3 XOF of 'driftsync chunking vector (default parameters)', 12 MiB",
            "cut_points": Chunker(SHARE.chunking_key).cut_points(big_input),
        },
        "blocks": blocks,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("storage_v1.json")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
