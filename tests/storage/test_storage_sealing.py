"""Sealing and opening blocks: round trips, determinism, and every kind of bad block."""

from __future__ import annotations

import os

import pytest
import zstandard

from storage.errors import (
    BlockAuthenticationError,
    BlockIdMismatchError,
    BlockTooLargeError,
    ChunkIdMismatchError,
    MalformedBlockError,
    UnknownEpochError,
    WrongBlockTypeError,
    WrongEpochError,
)
from storage.hashing import ChunkId, block_id_of, chunk_id_of
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.padding import MIN_SEALED_SIZE, padded_size
from storage.sealing import (
    HEADER_SIZE,
    MAX_BLOCK_SIZE,
    MAX_PLAINTEXT_SIZE,
    OVERHEAD,
    BlockType,
    _decode_body,
    open_block,
    open_chunk,
    seal_block,
    seal_chunk,
)

DATA = BlockType.DATA


@pytest.mark.parametrize(
    "plain",
    [b"", b"x", b"hello world" * 1000, os.urandom(70_000), bytes(MAX_PLAINTEXT_SIZE)],
    ids=["empty", "one byte", "text", "random", "max zeros"],
)
def test_round_trip(share: ShareKeys, key: SealingKey, keyring: Keyring, plain: bytes) -> None:
    sealed = seal_block(share, key, DATA, plain)
    assert len(sealed.data) <= MAX_BLOCK_SIZE
    assert sealed.block_id == block_id_of(sealed.data)
    opened = open_block(share, keyring, sealed.data, expected_type=DATA, block_id=sealed.block_id)
    assert opened == plain


def test_sealing_is_deterministic_per_share_and_epoch(
    share: ShareKeys, other_share: ShareKeys, key: SealingKey, keyring: Keyring
) -> None:
    plain = os.urandom(10_000)
    first = seal_block(share, key, DATA, plain)
    assert seal_block(share, key, DATA, plain) == first
    assert seal_block(other_share, key, DATA, plain).block_id != first.block_id
    assert seal_block(share, keyring[2], DATA, plain).block_id != first.block_id
    assert seal_block(share, key, BlockType.MANIFEST, plain).block_id != first.block_id


def test_sizes_are_padded_with_a_floor(share: ShareKeys, key: SealingKey) -> None:
    for size in (0, 1, 100, 4000):
        assert len(seal_block(share, key, DATA, os.urandom(size)).data) == MIN_SEALED_SIZE
    sizes = {len(seal_block(share, key, DATA, os.urandom(n)).data) for n in range(70_000, 70_400)}
    assert sizes == {padded_size(OVERHEAD + 70_000)}  # 400 different lengths, one sealed size


def test_compression_pays_only_when_it_shrinks_the_block(share: ShareKeys, key: SealingKey) -> None:
    text = b"the same sentence again and again. " * 3000
    assert len(seal_block(share, key, DATA, text).data) < len(text) // 4
    noise = os.urandom(len(text))
    assert len(seal_block(share, key, DATA, noise).data) == padded_size(OVERHEAD + len(noise))


def test_oversized_plaintext_is_refused(share: ShareKeys, key: SealingKey) -> None:
    with pytest.raises(BlockTooLargeError):
        seal_block(share, key, DATA, bytes(MAX_PLAINTEXT_SIZE + 1))


def test_oversized_block_is_refused(share: ShareKeys, keyring: Keyring) -> None:
    with pytest.raises(BlockTooLargeError):
        open_block(share, keyring, bytes(MAX_BLOCK_SIZE + 1), expected_type=DATA)


@pytest.fixture
def sealed_data(share: ShareKeys, key: SealingKey) -> bytes:
    return seal_block(share, key, DATA, b"some file content " * 500).data


@pytest.mark.parametrize("offset", [0, 5, 9, HEADER_SIZE - 1, HEADER_SIZE, 200, -1])
def test_any_flipped_byte_is_rejected(
    share: ShareKeys, keyring: Keyring, sealed_data: bytes, offset: int
) -> None:
    tampered = bytearray(sealed_data)
    tampered[offset] ^= 0x01
    with pytest.raises((BlockAuthenticationError, MalformedBlockError, UnknownEpochError)):
        open_block(share, keyring, bytes(tampered), expected_type=DATA)


def test_tampering_is_caught_by_block_id_first(
    share: ShareKeys, keyring: Keyring, sealed_data: bytes
) -> None:
    tampered = bytearray(sealed_data)
    tampered[-1] ^= 0x80
    with pytest.raises(BlockIdMismatchError):
        open_block(
            share, keyring, bytes(tampered), expected_type=DATA, block_id=block_id_of(sealed_data)
        )


@pytest.mark.parametrize("cut", [1, 16, 100, 4000])
def test_truncated_block_is_rejected(
    share: ShareKeys, keyring: Keyring, sealed_data: bytes, cut: int
) -> None:
    with pytest.raises((BlockAuthenticationError, MalformedBlockError)):
        open_block(share, keyring, sealed_data[:-cut], expected_type=DATA)


def test_block_of_another_share_is_rejected(
    other_share: ShareKeys, keyring: Keyring, sealed_data: bytes
) -> None:
    with pytest.raises(BlockAuthenticationError, match="another share"):
        open_block(other_share, keyring, sealed_data, expected_type=DATA)


def test_wrong_key_for_the_epoch_is_rejected(share: ShareKeys, sealed_data: bytes) -> None:
    impostor = Keyring([SealingKey(1, bytes(32))])
    with pytest.raises(BlockAuthenticationError):
        open_block(share, impostor, sealed_data, expected_type=DATA)


def test_unknown_epoch_says_which(share: ShareKeys, sealed_data: bytes) -> None:
    with pytest.raises(UnknownEpochError) as info:
        open_block(share, Keyring([SealingKey(9, bytes(32))]), sealed_data, expected_type=DATA)
    assert info.value.epoch == 1


def test_wrong_block_type_and_epoch_are_rejected(
    share: ShareKeys, keyring: Keyring, sealed_data: bytes
) -> None:
    with pytest.raises(WrongBlockTypeError):
        open_block(share, keyring, sealed_data, expected_type=BlockType.MANIFEST)
    with pytest.raises(WrongEpochError):
        open_block(share, keyring, sealed_data, expected_type=DATA, expected_epoch=2)


def test_open_chunk_checks_the_chunk_id(
    share: ShareKeys, key: SealingKey, keyring: Keyring
) -> None:
    sealed = seal_chunk(share, key, b"chunk one")
    assert sealed.chunk_id == chunk_id_of(share.chunk_id_key, b"chunk one")
    data = sealed.block.data
    assert open_chunk(share, keyring, data, chunk_id=sealed.chunk_id) == b"chunk one"
    with pytest.raises(ChunkIdMismatchError):
        open_chunk(share, keyring, data, chunk_id=ChunkId(bytes(32)))


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x00\x00\x03abc\x00\x01",  # non-zero padding
        b"\x00\x00\x00\x00\x09abc",  # length past the end
        b"\x02\x00\x00\x00\x03abc",  # unknown encoding
        b"\x01\x00\x00\x00\x03abc",  # not a zstd frame
    ],
    ids=["padding", "length", "encoding", "zstd"],
)
def test_body_decoder_is_strict_even_for_authenticated_bytes(body: bytes) -> None:
    # Reaching the body needs a valid tag, so these only come from a buggy or hostile sealer.
    with pytest.raises(MalformedBlockError):
        _decode_body(body)


def test_decompression_is_bounded() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(MAX_PLAINTEXT_SIZE + 1))
    body = bytes([1]) + len(bomb).to_bytes(4, "big") + bomb
    with pytest.raises(MalformedBlockError):
        _decode_body(body)
