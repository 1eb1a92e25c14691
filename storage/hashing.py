"""Identifiers: chunk ids (keyed BLAKE3, per share), block ids (SHA-256, keyless).

A chunk id names plaintext and is keyed with the share's chunk-id key, so equal chunks dedupe
inside a share and nowhere else. A block id names sealed bytes and needs no key, so the relay and
S3 can verify every upload. The content hash of a whole file is the keyed BLAKE3 of its bytes
under the same key: for a one-chunk file it equals that chunk's id.
"""

from __future__ import annotations

import hashlib
from typing import NewType

import blake3

from storage.errors import BlockIdMismatchError, ParameterError

Buffer = bytes | bytearray | memoryview

ChunkId = NewType("ChunkId", bytes)
BlockId = NewType("BlockId", bytes)

ID_SIZE = 32


def chunk_id_of(chunk_id_key: bytes, chunk: Buffer) -> ChunkId:
    return ChunkId(blake3.blake3(chunk, key=chunk_id_key).digest())


class ContentHasher:
    """Streaming keyed BLAKE3 of a whole file, fed chunk by chunk in order."""

    def __init__(self, chunk_id_key: bytes) -> None:
        self._hasher = blake3.blake3(key=chunk_id_key)
        self.size = 0

    def update(self, data: Buffer) -> None:
        self._hasher.update(data)
        self.size += len(data)

    def digest(self) -> bytes:
        return self._hasher.digest()

    def copy(self) -> ContentHasher:
        twin = ContentHasher.__new__(ContentHasher)
        twin._hasher = self._hasher.copy()
        twin.size = self.size
        return twin


def block_id_of(sealed: Buffer) -> BlockId:
    return BlockId(hashlib.sha256(sealed).digest())


def verify_block_id(block_id: BlockId, sealed: Buffer) -> None:
    if block_id_of(sealed) != block_id:
        raise BlockIdMismatchError(
            f"block {block_id.hex()} is corrupt: its bytes hash to {block_id_of(sealed).hex()}"
        )


def parse_block_id(text: str) -> BlockId:
    """A block id from its 64-character hex form (as file names and URLs carry it)."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ParameterError(f"{text!r} is not a block id (64 hex digits)") from None
    if len(raw) != ID_SIZE or text != raw.hex():
        raise ParameterError(f"{text!r} is not a block id (64 lowercase hex digits)")
    return BlockId(raw)


def check_block_id(block_id: bytes) -> BlockId:
    if not isinstance(block_id, bytes) or len(block_id) != ID_SIZE:
        raise ParameterError("a block id is 32 bytes (the SHA-256 of the sealed block)")
    return BlockId(block_id)
