"""Indexing without sealing: a file's chunk ids and sizes, e.g. for a scanner deciding what changed.

Synchronous and streaming (a window of twice the maximum chunk size); run it in an executor from
async code. Chunk ids match what ingest would record, so an index tells which chunks a peer or
the relay must already hold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from storage.chunking import DEFAULT_CHUNKING, Chunker, ChunkingParams
from storage.errors import SourceError
from storage.hashing import ChunkId, ContentHasher, chunk_id_of
from storage.keys import ShareKeys


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    chunk_id: ChunkId
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class FileIndex:
    size: int
    content_hash: bytes | None  # None unless asked for (or the file is at most one chunk)
    chunks: tuple[IndexedChunk, ...]


def index_stream(
    reader: BinaryIO,
    share: ShareKeys,
    params: ChunkingParams = DEFAULT_CHUNKING,
    *,
    content_hash: bool = False,
) -> FileIndex:
    """Chunk ids of a stream; with ``content_hash``, also the whole-file hash (one more pass
    of BLAKE3 for files of several chunks; a one-chunk file's content hash is its chunk id)."""
    hasher = ContentHasher(share.chunk_id_key) if content_hash else None
    chunks = []
    offset = 0
    for view in Chunker(share.chunking_key, params).stream(reader):
        if hasher is not None:
            hasher.update(view)
        chunks.append(IndexedChunk(chunk_id_of(share.chunk_id_key, view), offset, len(view)))
        offset += len(view)
    if len(chunks) == 1:
        whole: bytes | None = chunks[0].chunk_id
    else:
        whole = hasher.digest() if hasher is not None else None
    return FileIndex(offset, whole, tuple(chunks))


def index_file(
    path: str | os.PathLike[str],
    share: ShareKeys,
    params: ChunkingParams = DEFAULT_CHUNKING,
    *,
    content_hash: bool = False,
) -> FileIndex:
    try:
        with open(path, "rb", buffering=0) as reader:
            return index_stream(reader, share, params, content_hash=content_hash)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
