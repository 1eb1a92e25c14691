"""Sealing: plaintext → compressed (when it pays) → padded → AES-256-GCM block, and back.

The construction (docs/storage.md has the byte-exact layout and test vectors):

* body = encoding (1 byte) ‖ payload length (u32 BE) ‖ payload ‖ zero padding, where the payload is
  the plaintext or its zstd frame, and the whole sealed block is ``max(4096, Padmé(size))`` bytes;
* header = magic ``DRFB`` ‖ format version ‖ block type ‖ 2 zero bytes ‖ epoch (u32 BE) ‖ body MAC;
* body MAC = keyed BLAKE3 (epoch's body-MAC subkey) of share id, header prefix and body;
* block key = keyed BLAKE3 (epoch's block-KDF subkey) of the body MAC: a fresh key per distinct
  body, so one key never seals two different plaintexts (even if zstd's output changes between
  versions) and the all-zero nonce is safe;
* block = header ‖ AES-256-GCM(block key, nonce 0, body, AD = context ‖ share id ‖ header).

Equal plaintexts in one share and epoch give equal blocks, so they dedupe at the relay.
"""

from __future__ import annotations

import hmac
import struct
import threading
from dataclasses import dataclass
from enum import IntEnum

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.chunking import MAX_CHUNK_SIZE
from storage.errors import (
    BlockAuthenticationError,
    BlockTooLargeError,
    ChunkIdMismatchError,
    MalformedBlockError,
    ParameterError,
    WrongBlockTypeError,
    WrongEpochError,
)
from storage.hashing import BlockId, Buffer, ChunkId, block_id_of, chunk_id_of, verify_block_id
from storage.keys import Keyring, SealingKey, ShareKeys
from storage.padding import padded_size

FORMAT_VERSION = 1
MAGIC = b"DRFB"
AD_CONTEXT = b"driftsync/v1/block"


class BlockType(IntEnum):
    DATA = 1
    MANIFEST = 2


class Encoding(IntEnum):
    RAW = 0
    ZSTD = 1


_HEADER = struct.Struct(">4sBBHI32s")
_HEADER_PREFIX = struct.Struct(">4sBBHI")
_HEADER_PREFIX_SIZE = 12  # magic, version, type, reserved, epoch: the part the body MAC covers
_BODY_PREFIX = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size
TAG_SIZE = 16
OVERHEAD = HEADER_SIZE + TAG_SIZE + _BODY_PREFIX.size
_NONCE = bytes(12)

#: The largest plaintext one block carries (a maximum chunk; manifests are held to it too).
MAX_PLAINTEXT_SIZE = MAX_CHUNK_SIZE
#: The largest sealed block there can be; stores and the relay refuse anything bigger.
MAX_BLOCK_SIZE = padded_size(OVERHEAD + MAX_PLAINTEXT_SIZE)
MIN_BLOCK_SIZE = padded_size(OVERHEAD)

_ZEROS = memoryview(bytes(MAX_BLOCK_SIZE))

ZSTD_LEVEL = 1
# Compress only when a sample of the chunk shrinks by this much: skips random data cheaply.
_SAMPLE_SIZE = 64 * 1024
_SAMPLE_MIN_SAVING = 0.05

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # Compressor objects are not thread-safe; one per worker thread is.
    comp: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if comp is None:
        comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        _local.compressor = comp
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dec is None:
        dec = zstandard.ZstdDecompressor()
        _local.decompressor = dec
    return dec


@dataclass(frozen=True, slots=True)
class SealedBlock:
    block_id: BlockId
    # A bytearray fresh from the cipher (copying 4 MiB into a bytes costs more than sealing's
    # AES); nobody else holds it, and nobody may change it: block_id names these bytes.
    data: bytes | bytearray
    block_type: BlockType
    epoch: int


@dataclass(frozen=True, slots=True)
class BlockHeader:
    version: int
    block_type: BlockType
    epoch: int
    body_mac: bytes


def _choose_payload(plaintext: Buffer, compress: bool) -> tuple[Encoding, Buffer]:
    size = len(plaintext)
    if not compress or size < 512:
        return Encoding.RAW, plaintext
    comp = _compressor()
    if size > 2 * _SAMPLE_SIZE:
        sample = memoryview(plaintext)[:_SAMPLE_SIZE]
        if len(comp.compress(sample)) > _SAMPLE_SIZE * (1 - _SAMPLE_MIN_SAVING):
            return Encoding.RAW, plaintext
    packed = comp.compress(plaintext)
    # It pays only if the sealed (padded) block gets smaller.
    if padded_size(OVERHEAD + len(packed)) < padded_size(OVERHEAD + size):
        return Encoding.ZSTD, packed
    return Encoding.RAW, plaintext


def _ad(share_id: bytes, header: bytes) -> bytes:
    return AD_CONTEXT + bytes([len(share_id)]) + share_id + header


def _body_mac(key: SealingKey, share_id: bytes, header_prefix: bytes, *body: Buffer) -> bytes:
    mac = blake3.blake3(bytes([len(share_id)]) + share_id + header_prefix, key=key.body_mac_key)
    for piece in body:
        mac.update(piece)
    return mac.digest()


def _block_key(key: SealingKey, body_mac: bytes) -> bytes:
    return blake3.blake3(body_mac, key=key.block_kdf_key).digest()


def seal_block(
    share: ShareKeys,
    key: SealingKey,
    block_type: BlockType,
    plaintext: Buffer,
    *,
    compress: bool = True,
) -> SealedBlock:
    """Seal one plaintext (a chunk or an encoded manifest) into a block. Deterministic."""
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise BlockTooLargeError(
            f"a block carries at most {MAX_PLAINTEXT_SIZE} bytes of plaintext, got {len(plaintext)}"
        )
    encoding, payload = _choose_payload(plaintext, compress)
    total = padded_size(OVERHEAD + len(payload))
    pad = total - OVERHEAD - len(payload)
    # The body is never assembled: its pieces stream through the MAC and the cipher.
    pieces = (_BODY_PREFIX.pack(encoding, len(payload)), payload, _ZEROS[:pad])
    prefix = _HEADER_PREFIX.pack(MAGIC, FORMAT_VERSION, block_type, 0, key.epoch)
    body_mac = _body_mac(key, share.share_id, prefix, *pieces)
    header = prefix + body_mac
    encryptor = Cipher(algorithms.AES(_block_key(key, body_mac)), modes.GCM(_NONCE)).encryptor()
    encryptor.authenticate_additional_data(_ad(share.share_id, header))
    # update_into wants room for one extra AES block beyond the data it is given.
    out = bytearray(total + 15)
    view = memoryview(out)
    view[:HEADER_SIZE] = header
    pos = HEADER_SIZE
    for piece in pieces:
        pos += encryptor.update_into(piece, view[pos:])
    encryptor.finalize()
    view[pos : pos + TAG_SIZE] = encryptor.tag
    view.release()
    del out[total:]
    sealed = out
    return SealedBlock(block_id_of(sealed), sealed, BlockType(block_type), key.epoch)


def parse_header(sealed: Buffer) -> BlockHeader:
    """The block's header fields, unauthenticated: for routing (which epoch key) only."""
    if len(sealed) > MAX_BLOCK_SIZE:
        raise BlockTooLargeError(f"block of {len(sealed)} bytes exceeds {MAX_BLOCK_SIZE}")
    if len(sealed) < MIN_BLOCK_SIZE:
        raise MalformedBlockError(f"block of {len(sealed)} bytes is truncated")
    magic, version, block_type, reserved, epoch, body_mac = _HEADER.unpack_from(sealed)
    if magic != MAGIC:
        raise MalformedBlockError("not a driftsync block (bad magic)")
    if version != FORMAT_VERSION:
        raise MalformedBlockError(f"unsupported block format version {version}")
    if reserved != 0 or block_type not in (BlockType.DATA, BlockType.MANIFEST):
        raise MalformedBlockError("malformed block header")
    return BlockHeader(version, BlockType(block_type), epoch, body_mac)


def open_block(
    share: ShareKeys,
    keyring: Keyring,
    sealed: Buffer,
    *,
    expected_type: BlockType,
    expected_epoch: int | None = None,
    block_id: BlockId | None = None,
) -> bytes:
    """Verify and open a block; returns its plaintext.

    Checks, in order: the block id (when given; stores already check it on ``get``), size limits
    and header, the AEAD tag and body MAC (which catch tampering, truncation, a wrong key and a
    block from another share), then the block type and epoch the caller expects.
    """
    if block_id is not None:
        verify_block_id(block_id, sealed)
    header = parse_header(sealed)
    key = keyring[header.epoch]
    view = memoryview(sealed)
    header_bytes = bytes(view[:HEADER_SIZE])
    try:
        body = AESGCM(_block_key(key, header.body_mac)).decrypt(
            _NONCE, view[HEADER_SIZE:], _ad(share.share_id, header_bytes)
        )
    except InvalidTag:
        raise BlockAuthenticationError(
            "block failed authentication: it was tampered with or truncated, or it belongs to "
            f"another share or key (epoch {header.epoch})"
        ) from None
    mac = _body_mac(key, share.share_id, header_bytes[:_HEADER_PREFIX_SIZE], body)
    if not hmac.compare_digest(mac, header.body_mac):
        raise BlockAuthenticationError("block body does not match its MAC")
    if header.block_type != expected_type:
        raise WrongBlockTypeError(
            f"expected a {expected_type.name.lower()} block, got a "
            f"{header.block_type.name.lower()} block"
        )
    if expected_epoch is not None and header.epoch != expected_epoch:
        raise WrongEpochError(f"expected a block of epoch {expected_epoch}, got {header.epoch}")
    return _decode_body(body)


def _decode_body(body: bytes) -> bytes:
    # Authenticated bytes reach here, but the layout is still checked strictly: only a body this
    # code would have produced is accepted.
    encoding, length = _BODY_PREFIX.unpack_from(body)
    end = _BODY_PREFIX.size + length
    if end > len(body) or body.count(0, end) != len(body) - end or encoding not in (0, 1):
        raise MalformedBlockError("malformed block body")
    payload = body[_BODY_PREFIX.size : end]
    if encoding == Encoding.RAW:
        return payload
    try:
        plain = _decompressor().decompress(payload, max_output_size=MAX_PLAINTEXT_SIZE)
    except zstandard.ZstdError as exc:
        raise MalformedBlockError(f"block payload does not decompress: {exc}") from None
    if len(plain) > MAX_PLAINTEXT_SIZE:
        raise MalformedBlockError("block payload decompresses beyond the size limit")
    return plain


@dataclass(frozen=True, slots=True)
class SealedChunk:
    chunk_id: ChunkId
    size: int
    block: SealedBlock


def seal_chunk(share: ShareKeys, key: SealingKey, chunk: Buffer) -> SealedChunk:
    if not chunk:
        raise ParameterError("an empty file has no chunks; there is nothing to seal")
    return SealedChunk(
        chunk_id_of(share.chunk_id_key, chunk),
        len(chunk),
        seal_block(share, key, BlockType.DATA, chunk),
    )


def open_chunk(
    share: ShareKeys,
    keyring: Keyring,
    sealed: Buffer,
    *,
    chunk_id: ChunkId,
    expected_epoch: int | None = None,
    block_id: BlockId | None = None,
) -> bytes:
    """Open a data block and check the plaintext is the chunk the caller asked for."""
    plain = open_block(
        share,
        keyring,
        sealed,
        expected_type=BlockType.DATA,
        expected_epoch=expected_epoch,
        block_id=block_id,
    )
    if chunk_id_of(share.chunk_id_key, plain) != chunk_id:
        raise ChunkIdMismatchError(
            f"block opened to a chunk other than {chunk_id.hex()} (wrong manifest entry?)"
        )
    return plain
