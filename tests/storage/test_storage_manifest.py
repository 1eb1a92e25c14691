"""Manifests and file references: encoding, strict decoding, sealing."""

from __future__ import annotations

import os

import pytest

from storage.errors import FileTooLargeError, MalformedManifestError, ParameterError
from storage.hashing import BlockId, ChunkId
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.manifest import (
    MAX_ENTRIES,
    FileRef,
    Manifest,
    ManifestEntry,
    RefKind,
    decode_manifest,
    encode_manifest,
    open_manifest,
    seal_manifest,
)


def manifest_of(sizes: list[int]) -> Manifest:
    entries = tuple(
        ManifestEntry(ChunkId(os.urandom(32)), BlockId(os.urandom(32)), i % 3, size)
        for i, size in enumerate(sizes)
    )
    return Manifest(sum(sizes), os.urandom(32), entries)


def test_encode_decode_round_trip() -> None:
    manifest = manifest_of([1, 4 * 1024 * 1024, 300_000])
    assert decode_manifest(encode_manifest(manifest)) == manifest


def test_manifest_of_a_5_gb_file_stays_small() -> None:
    chunks = 5 * 10**9 // (1024 * 1024) + 1
    encoded = encode_manifest(manifest_of([1024 * 1024] * chunks))
    assert len(encoded) < 400_000  # 72 bytes a chunk


def test_inconsistent_manifests_cannot_be_built() -> None:
    with pytest.raises(ParameterError):
        Manifest(10, bytes(32), ())
    entry = ManifestEntry(ChunkId(bytes(32)), BlockId(bytes(32)), 0, 5)
    with pytest.raises(ParameterError):
        Manifest(6, bytes(32), (entry,))


def test_too_many_chunks_is_a_clear_error() -> None:
    entry = ManifestEntry(ChunkId(bytes(32)), BlockId(bytes(32)), 0, 1)
    with pytest.raises(FileTooLargeError):
        Manifest(MAX_ENTRIES + 1, bytes(32), (entry,) * (MAX_ENTRIES + 1))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],
        lambda b: b + b"\0",
        lambda b: b"XXXX" + b[4:],
        lambda b: b[:4] + b"\x02" + b[5:],
        lambda b: b[:5] + b"\x01" + b[6:],
        lambda b: b[:8] + (1).to_bytes(8, "big") + b[16:],
        lambda b: b[:48] + (0).to_bytes(4, "big") + b[52:],
        lambda b: b[:20],
    ],
    ids=[
        "truncated",
        "trailing byte",
        "magic",
        "version",
        "reserved",
        "file size",
        "count",
        "header only",
    ],
)
def test_decoder_rejects_mutations(mutate: object) -> None:
    encoded = encode_manifest(manifest_of([10, 20]))
    with pytest.raises(MalformedManifestError):
        decode_manifest(mutate(encoded))  # type: ignore[operator]


def test_zero_size_entry_is_rejected() -> None:
    encoded = bytearray(encode_manifest(manifest_of([10, 20])))
    # Move all 10 bytes of the first chunk onto the second: sizes still add up, one is zero.
    encoded[52 + 68 : 52 + 72] = (0).to_bytes(4, "big")
    encoded[52 + 72 + 68 : 52 + 144] = (30).to_bytes(4, "big")
    with pytest.raises(MalformedManifestError):
        decode_manifest(bytes(encoded))


def test_sealed_manifest_round_trip(share: ShareKeys, key: SealingKey, keyring: Keyring) -> None:
    manifest = manifest_of([100, 200, 300])
    sealed = seal_manifest(share, key, manifest)
    assert open_manifest(share, keyring, sealed.data, block_id=sealed.block_id) == manifest


def test_file_ref_dict_round_trip_and_checks() -> None:
    ref = FileRef(RefKind.MANIFEST, 10_000_000, os.urandom(32), BlockId(os.urandom(32)))
    assert FileRef.from_dict(ref.to_dict()) == ref
    empty = FileRef(RefKind.EMPTY, 0, os.urandom(32), None)
    assert FileRef.from_dict(empty.to_dict()) == empty
    with pytest.raises(ParameterError):
        FileRef(RefKind.EMPTY, 3, bytes(32), None)
    with pytest.raises(ParameterError):
        FileRef(RefKind.CHUNK, 3, bytes(32), None)
    with pytest.raises(ParameterError):
        FileRef.from_dict({"kind": "folder"})
