"""Manifests: the ordered list of chunks of one file version, and a reference to a version.

A version of a file is named by a :class:`FileRef`: empty (no block), one chunk (the version *is*
that data block) or a manifest block. A :class:`Manifest` lists chunks; one block holds up to
:data:`MAX_ENTRIES` of them (at least 14 GiB of file). A larger file is cut into parts of that
many chunks, each a chunk manifest of its own, and a :class:`PartsManifest` lists the parts, so
files of any size work with every manifest block bounded and memory bounded by one part.

The byte layout (docs/storage.md) is fixed-width so a manifest stays small (72 bytes per chunk:
about 360 KB for a 5 GB file) and its decoder is strict: any byte string it accepts re-encodes
to itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum

from storage.chunking import MAX_CHUNK_SIZE
from storage.errors import FileTooLargeError, MalformedManifestError, ParameterError
from storage.hashing import ID_SIZE, BlockId, Buffer, ChunkId
from storage.keys import MAX_EPOCH, Keyring, SealingKey, ShareKeys
from storage.sealing import MAX_PLAINTEXT_SIZE, BlockType, SealedBlock, open_block, seal_block

MANIFEST_MAGIC = b"DRFM"
MANIFEST_VERSION = 1

_HEAD = struct.Struct(">4sBBHQ32sI")
_ENTRY = struct.Struct(">32s32sII")
_PART = struct.Struct(">32s32sIQ")
#: The most chunks one manifest block lists (at least 14 GiB of file, about 57 GiB typically).
MAX_ENTRIES = (MAX_PLAINTEXT_SIZE - _HEAD.size) // _ENTRY.size
#: The most parts one parts manifest lists (so a file may hold over 3 billion chunks).
MAX_PARTS = (MAX_PLAINTEXT_SIZE - _HEAD.size) // _PART.size
MAX_FILE_SIZE = 2**63 - 1


class ManifestKind(IntEnum):
    CHUNKS = 0
    PARTS = 1


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
                f"{len(self.entries)} chunks exceed the {MAX_ENTRIES} one manifest holds"
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


@dataclass(frozen=True, slots=True)
class PartEntry:
    """One part of a large file: a chunk manifest covering ``size`` bytes of it."""

    content_hash: bytes  # keyed BLAKE3 (chunk-id key) of the part's bytes
    block_id: BlockId  # the part's chunk manifest block
    epoch: int
    size: int


@dataclass(frozen=True, slots=True)
class PartsManifest:
    file_size: int
    content_hash: bytes
    parts: tuple[PartEntry, ...]

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise ParameterError("a parts manifest lists at least two parts")
        if len(self.parts) > MAX_PARTS:
            raise FileTooLargeError(f"{len(self.parts)} parts exceed the {MAX_PARTS} allowed")
        if len(self.content_hash) != ID_SIZE:
            raise ParameterError("content hash must be 32 bytes")
        for p in self.parts:
            if len(p.content_hash) != ID_SIZE or len(p.block_id) != ID_SIZE:
                raise ParameterError("part hashes and block ids are 32 bytes")
            if not 1 <= p.size <= MAX_FILE_SIZE or not 0 <= p.epoch <= MAX_EPOCH:
                raise ParameterError("part size or epoch out of range")
        if sum(p.size for p in self.parts) != self.file_size:
            raise ParameterError("part sizes do not add up to the file size")

    def block_ids(self) -> list[BlockId]:
        """The part manifests' blocks (their chunks' blocks are listed in each part)."""
        return [p.block_id for p in self.parts]


AnyManifest = Manifest | PartsManifest


def encode_manifest(manifest: AnyManifest) -> bytes:
    if isinstance(manifest, PartsManifest):
        kind, rows, layout = ManifestKind.PARTS, manifest.parts, _PART
        values = [(p.content_hash, p.block_id, p.epoch, p.size) for p in manifest.parts]
    else:
        kind, rows, layout = ManifestKind.CHUNKS, manifest.entries, _ENTRY
        values = [(e.chunk_id, e.block_id, e.epoch, e.size) for e in manifest.entries]
    out = bytearray(_HEAD.size + layout.size * len(rows))
    _HEAD.pack_into(
        out,
        0,
        MANIFEST_MAGIC,
        MANIFEST_VERSION,
        kind,
        0,
        manifest.file_size,
        manifest.content_hash,
        len(rows),
    )
    for i, row in enumerate(values):
        layout.pack_into(out, _HEAD.size + i * layout.size, *row)
    return bytes(out)


def decode_manifest(data: Buffer) -> AnyManifest:
    """Decode manifest bytes; raises :class:`MalformedManifestError` on anything else."""
    if len(data) < _HEAD.size:
        raise MalformedManifestError("manifest is truncated")
    magic, version, kind, reserved, file_size, content_hash, count = _HEAD.unpack_from(data)
    if magic != MANIFEST_MAGIC:
        raise MalformedManifestError("not a driftsync manifest (bad magic)")
    if version != MANIFEST_VERSION:
        raise MalformedManifestError(f"unsupported manifest version {version}")
    if reserved != 0 or kind not in (ManifestKind.CHUNKS, ManifestKind.PARTS):
        raise MalformedManifestError("malformed manifest header")
    layout = _ENTRY if kind == ManifestKind.CHUNKS else _PART
    if len(data) != _HEAD.size + count * layout.size:
        raise MalformedManifestError(
            f"manifest says {count} entries but holds {len(data) - _HEAD.size} bytes of them"
        )
    rows = layout.iter_unpack(memoryview(data)[_HEAD.size :])
    try:
        if kind == ManifestKind.PARTS:
            parts = tuple(PartEntry(h, BlockId(b), epoch, size) for h, b, epoch, size in rows)
            return PartsManifest(file_size, content_hash, parts)
        entries = tuple(
            ManifestEntry(ChunkId(c), BlockId(b), epoch, size) for c, b, epoch, size in rows
        )
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


def seal_manifest(share: ShareKeys, key: SealingKey, manifest: AnyManifest) -> SealedBlock:
    return seal_block(share, key, BlockType.MANIFEST, encode_manifest(manifest))


def open_manifest(
    share: ShareKeys,
    keyring: Keyring,
    sealed: Buffer,
    *,
    block_id: BlockId | None = None,
    expected_epoch: int | None = None,
) -> AnyManifest:
    """Open and decode a manifest block (verifying it like any block)."""
    plain = open_block(
        share,
        keyring,
        sealed,
        expected_type=BlockType.MANIFEST,
        block_id=block_id,
        expected_epoch=expected_epoch,
    )
    return decode_manifest(plain)
