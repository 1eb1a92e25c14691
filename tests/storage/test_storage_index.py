"""Indexing agrees with ingest: same chunk ids, sizes and content hash."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from storage.dirstore import DirectoryBlockStore
from storage.errors import SourceError
from storage.index import index_file
from storage.ingest import ingest_file
from storage.keys import SealingKey, ShareKeys
from storage.manifest import Manifest


@pytest.mark.parametrize("size", [0, 10, 7 * 1024 * 1024])
async def test_index_matches_what_ingest_records(
    dir_store: DirectoryBlockStore, share: ShareKeys, key: SealingKey, tmp_path: Path, size: int
) -> None:
    src = tmp_path / "f"
    src.write_bytes(random.Random(size).randbytes(size))
    index = index_file(src, share, content_hash=True)
    result = await ingest_file(src, dir_store, share, key)
    assert index.size == size
    assert index.content_hash == result.ref.content_hash
    if isinstance(result.manifest, Manifest):
        assert [(c.chunk_id, c.size) for c in index.chunks] == [
            (e.chunk_id, e.size) for e in result.manifest.entries
        ]
        assert index_file(src, share).content_hash is None  # not asked for: no extra pass
    assert [c.offset for c in index.chunks] == [
        sum(c.size for c in index.chunks[:i]) for i in range(len(index.chunks))
    ]


def test_unreadable_file_is_a_source_error(share: ShareKeys, tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        index_file(tmp_path / "missing", share)
