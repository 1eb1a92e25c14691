"""Every decoder meets random and mutated bytes with the package's own errors only."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.errors import StorageError
from storage.hashing import BlockId, ChunkId
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.manifest import (
    Manifest,
    ManifestEntry,
    PartEntry,
    PartsManifest,
    decode_manifest,
    encode_manifest,
)
from storage.sealing import BlockType, open_block, seal_block

SHARE = ShareKeys(b"fuzz share", bytes(range(32)), bytes(range(1, 33)))
KEY = SealingKey(3, bytes(range(2, 34)))
KEYRING = Keyring([KEY])

VALID_BLOCKS = [
    seal_block(SHARE, KEY, BlockType.DATA, b"a chunk of a file " * 300).data,
    seal_block(SHARE, KEY, BlockType.DATA, bytes(range(256)) * 40).data,
    seal_block(SHARE, KEY, BlockType.MANIFEST, b"\x00" * 5000).data,
]
VALID_MANIFEST = encode_manifest(
    Manifest(
        30,
        bytes(32),
        (
            ManifestEntry(ChunkId(bytes(32)), BlockId(bytes([1]) * 32), 3, 10),
            ManifestEntry(ChunkId(bytes([2]) * 32), BlockId(bytes([3]) * 32), 4, 20),
        ),
    )
)


VALID_PARTS = encode_manifest(
    PartsManifest(
        2**40,
        bytes(32),
        (
            PartEntry(bytes([4]) * 32, BlockId(bytes([5]) * 32), 1, 2**40 - 7),
            PartEntry(bytes([6]) * 32, BlockId(bytes([7]) * 32), 2, 7),
        ),
    )
)


def mutations() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    op = st.tuples(
        st.sampled_from(["flip", "set", "truncate", "insert", "delete"]),
        st.integers(0, 2**31),
        st.integers(0, 255),
    )
    return st.lists(op, min_size=1, max_size=6)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, where, value in ops:
        pos = where % (len(out) + 1)
        if op == "flip" and pos < len(out):
            out[pos] ^= 1 << (value % 8)
        elif op == "set" and pos < len(out):
            out[pos] = value
        elif op == "truncate":
            del out[pos:]
        elif op == "insert":
            out[pos:pos] = bytes([value])
        elif op == "delete" and pos < len(out):
            del out[pos]
    return bytes(out)


def open_any(data: bytes) -> None:
    for block_type in BlockType:
        try:
            open_block(SHARE, KEYRING, data, expected_type=block_type)
        except StorageError:
            continue


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=6000))
def test_open_block_rejects_random_bytes_with_storage_errors(data: bytes) -> None:
    with pytest.raises(StorageError):
        open_block(SHARE, KEYRING, data, expected_type=BlockType.DATA)


@FUZZ
@given(st.sampled_from(VALID_BLOCKS), mutations())
def test_open_block_rejects_mutated_blocks_with_storage_errors(
    block: bytes, ops: list[tuple[str, int, int]]
) -> None:
    mutated = mutate(block, ops)
    if mutated == block:
        return
    for block_type in BlockType:
        with pytest.raises(StorageError):
            open_block(SHARE, KEYRING, mutated, expected_type=block_type)


@FUZZ
@given(st.binary(max_size=400))
def test_decode_manifest_rejects_random_bytes_with_storage_errors(data: bytes) -> None:
    with pytest.raises(StorageError):
        decode_manifest(data)


@FUZZ
@given(st.sampled_from([VALID_MANIFEST, VALID_PARTS]), mutations())
def test_decode_manifest_accepts_only_what_reencodes_to_itself(
    valid: bytes, ops: list[tuple[str, int, int]]
) -> None:
    mutated = mutate(valid, ops)
    try:
        manifest = decode_manifest(mutated)
    except StorageError:
        return
    # A mutation may still be a valid manifest (e.g. a changed id byte): then it is exact.
    assert encode_manifest(manifest) == mutated


LONG = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@LONG
@given(st.sampled_from(VALID_BLOCKS), mutations())
def test_open_block_rejects_mutated_blocks_long(
    block: bytes, ops: list[tuple[str, int, int]]
) -> None:
    test_open_block_rejects_mutated_blocks_with_storage_errors.hypothesis.inner_test(block, ops)


@pytest.mark.slow
@LONG
@given(st.sampled_from([VALID_MANIFEST, VALID_PARTS]), mutations())
def test_decode_manifest_long(valid: bytes, ops: list[tuple[str, int, int]]) -> None:
    test_decode_manifest_accepts_only_what_reencodes_to_itself.hypothesis.inner_test(valid, ops)
