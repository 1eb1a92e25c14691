"""Manifests: the ordered list of chunks of one file version, and a reference to a version.

A version of a file is named by a :class:`FileRef`: empty (no block), one chunk (the version *is*
that data block) or a manifest block listing every chunk. The byte layout (docs/storage.md) is
fixed-width so a manifest stays small (72 bytes per chunk: about 360 KB for a 5 GB file) and its
decoder is strict: any byte string it accepts re-encodes to itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from storage.chunking import MAX_CHUNK_SIZE
from storage.errors import FileTooLargeError, MalformedManifestError, ParameterError
from storage.hashing import ID_SIZE, BlockId, Buffer, ChunkId
from storage.keys import MAX_EPOCH, Keyring, SealingKey, ShareKeys
from storage.sealing import MAX_PLAINTEXT_SIZE, BlockType, SealedBlock, open_block, seal_block

MANIFEST_MAGIC = b"DRFM"
MANIFEST_VERSION = 1

_HEAD = struct.Struct(">4sB3sQ32sI")
_ENTRY = struct.Struct(">32s32sII")
#: The most chunks one manifest block lists (at least 14 GiB of file, about 57 GiB typically).
MAX_ENTRIES = (MAX_PLAINTEXT_SIZE - _HEAD.size) // _ENTRY.size


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    chunk_id: ChunkId
    block_id: BlockId
    epoch: int
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    file_size: int
    content_hash: bytes
    entries: tuple[ManifestEntry, ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ParameterError("a manifest lists at least one chunk")
        if len(self.entries) > MAX_ENTRIES:
            raise FileTooLargeError(
                f"a file of {len(self.entries)} chunks exceeds the {MAX_ENTRIES} one manifest holds"
            )
        if len(self.content_hash) != ID_SIZE:
            raise ParameterError("content hash must be 32 bytes")
        for e in self.entries:
            if len(e.chunk_id) != ID_SIZE or len(e.block_id) != ID_SIZE:
                raise ParameterError("chunk and block ids are 32 bytes")
            if not 1 <= e.size <= MAX_CHUNK_SIZE or not 0 <= e.epoch <= MAX_EPOCH:
                raise ParameterError("manifest entry size or epoch out of range")
        if sum(e.size for e in self.entries) != self.file_size:
            raise ParameterError("manifest chunk sizes do not add up to the file size")

    def block_ids(self) -> list[BlockId]:
        return [e.block_id for e in self.entries]


def encode_manifest(manifest: Manifest) -> bytes:
    out = bytearray(_HEAD.size + _ENTRY.size * len(manifest.entries))
    _HEAD.pack_into(
        out,
        0,
        MANIFEST_MAGIC,
        MANIFEST_VERSION,
        bytes(3),
        manifest.file_size,
        manifest.content_hash,
        len(manifest.entries),
    )
    pos = _HEAD.size
    for e in manifest.entries:
        _ENTRY.pack_into(out, pos, e.chunk_id, e.block_id, e.epoch, e.size)
        pos += _ENTRY.size
    return bytes(out)


def decode_manifest(data: Buffer) -> Manifest:
    """Decode manifest bytes; raises :class:`MalformedManifestError` on anything else."""
    if len(data) < _HEAD.size:
        raise MalformedManifestError("manifest is truncated")
    magic, version, reserved, file_size, content_hash, count = _HEAD.unpack_from(data)
    if magic != MANIFEST_MAGIC:
        raise MalformedManifestError("not a driftsync manifest (bad magic)")
    if version != MANIFEST_VERSION:
        raise MalformedManifestError(f"unsupported manifest version {version}")
    if reserved != bytes(3):
        raise MalformedManifestError("malformed manifest header")
    if len(data) != _HEAD.size + count * _ENTRY.size:
        raise MalformedManifestError(
            f"manifest says {count} entries but holds {len(data) - _HEAD.size} bytes of them"
        )
    entries = tuple(
        ManifestEntry(ChunkId(c), BlockId(b), epoch, size)
        for c, b, epoch, size in _ENTRY.iter_unpack(memoryview(data)[_HEAD.size :])
    )
    try:
        return Manifest(file_size, content_hash, entries)
    except (ParameterError, FileTooLargeError) as exc:
        raise MalformedManifestError(f"invalid manifest: {exc}") from None


class RefKind(Enum):
    EMPTY = "empty"
    CHUNK = "chunk"
    MANIFEST = "manifest"


@dataclass(frozen=True, slots=True)
class FileRef:
    """What the folder tree records for a file version (besides mtime and author).

    ``content_hash`` is the keyed BLAKE3 (chunk-id key) of the whole file; for a one-chunk file it
    is also that chunk's id. ``block_id`` is the manifest block, the single data block, or None
    for an empty file.
    """

    kind: RefKind
    size: int
    content_hash: bytes
    block_id: BlockId | None

    def __post_init__(self) -> None:
        if (self.kind is RefKind.EMPTY) != (self.block_id is None):
            raise ParameterError("only an empty file version has no block")
        if self.kind is RefKind.EMPTY and self.size != 0:
            raise ParameterError("an empty file version has size 0")
        if self.kind is RefKind.CHUNK and not 1 <= self.size <= MAX_CHUNK_SIZE:
            raise ParameterError("a one-chunk version holds 1 byte to 4 MiB")
        if len(self.content_hash) != ID_SIZE:
            raise ParameterError("content hash must be 32 bytes")

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "size": self.size,
            "content_hash": self.content_hash.hex(),
            "block_id": None if self.block_id is None else self.block_id.hex(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> FileRef:
        try:
            block = raw["block_id"]
            return cls(
                RefKind(raw["kind"]),
                int(raw["size"]),  # type: ignore[call-overload]
                bytes.fromhex(str(raw["content_hash"])),
                None if block is None else BlockId(bytes.fromhex(str(block))),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ParameterError(f"not a file reference: {exc}") from None


def seal_manifest(share: ShareKeys, key: SealingKey, manifest: Manifest) -> SealedBlock:
    return seal_block(share, key, BlockType.MANIFEST, encode_manifest(manifest))


def open_manifest(
    share: ShareKeys, keyring: Keyring, sealed: Buffer, *, block_id: BlockId | None = None
) -> Manifest:
    """Open and decode a manifest block (verifying it like any block)."""
    plain = open_block(share, keyring, sealed, expected_type=BlockType.MANIFEST, block_id=block_id)
    return decode_manifest(plain)
