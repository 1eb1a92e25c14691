"""Blocks of shares: the content-addressed store (storage's BlockStore) plus which share owns what.

The store is global and deduplicates by block id; the ``share_blocks`` table says which shares
hold a block, and a device only ever learns about or reads blocks of shares it belongs to (so a
relay never becomes an oracle for another share's content). Uploads are verified against the
block id by the store before anything is recorded; a wrong body is refused and stored nowhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relay.db import Tx
from relay.errors import BadRequest, BlockMismatch, NotFound, PayloadTooLarge, Unavailable
from seams import Executor
from storage.blockstore import BlockStore
from storage.dirstore import DirectoryBlockStore
from storage.errors import (
    BlockIdMismatchError,
    BlockNotFoundError,
    BlockTooLargeError,
    ParameterError,
    StoreError,
)
from storage.hashing import BlockId

ID_BYTES = 32


def check_ids(block_ids: Sequence[bytes]) -> None:
    for block_id in block_ids:
        if not isinstance(block_id, bytes) or len(block_id) != ID_BYTES:
            raise BadRequest("a block id is 32 bytes (the SHA-256 of the sealed block)")


class Presigner:
    """Pre-signed GET URLs for blocks in S3 (immutable objects, so cacheable for their lifetime)."""

    def __init__(self, client: Any, bucket: str, prefix: str, expires_s: int = 600) -> None:
        self._client, self._bucket, self._prefix = client, bucket, prefix
        self.expires_s = expires_s

    def url(self, block_id: bytes) -> str:
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self._bucket,
                    "Key": f"{self._prefix}blocks/{block_id.hex()}",
                    "ResponseCacheControl": "public, max-age=31536000, immutable",
                },
                ExpiresIn=self.expires_s,
            )
        )


class BlockAccess:
    def __init__(
        self, store: BlockStore, executor: Executor, presigner: Presigner | None = None
    ) -> None:
        self.store = store
        self._executor = executor
        self._presigner = presigner

    async def present(self, tx: Tx, share_id: str, block_ids: Sequence[bytes]) -> list[bytes]:
        """Those of ``block_ids`` the share holds, in the order asked."""
        check_ids(block_ids)
        found: set[bytes] = set()
        unique = list(dict.fromkeys(block_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await tx.fetchall(
                f"SELECT block_id FROM share_blocks WHERE share_id = ? AND block_id IN ({marks})",
                share_id,
                *chunk,
            )
            found.update(bytes(r[0]) for r in rows)  # type: ignore[arg-type]
        return [b for b in block_ids if b in found]

    async def put(self, blocks: Sequence[tuple[bytes, bytes]]) -> None:
        """Put the blocks in the store (several in flight), each verified against its id.

        Nothing of a bad block is kept; the good ones of the same batch may be, which is harmless:
        a put is idempotent and a block is only the share's once it is recorded.
        """
        check_ids([b for b, _ in blocks])
        try:
            await self.store.put_many((BlockId(b), d) for b, d in blocks)
        except BlockIdMismatchError as exc:
            # Only on this path is it worth hashing again, to name the culprit.
            bad = next(b for b, d in blocks if hashlib.sha256(d).digest() != b)
            raise BlockMismatch(
                "block body does not hash to its block id; nothing was stored",
                block_id=bad.hex(),
            ) from exc
        except BlockTooLargeError as exc:
            raise PayloadTooLarge(str(exc)) from exc
        except ParameterError as exc:
            raise BadRequest(str(exc)) from exc
        except StoreError as exc:
            raise Unavailable("the block store failed; retry later") from exc

    async def record(
        self, tx: Tx, share_id: str, blocks: Sequence[tuple[bytes, bytes]]
    ) -> tuple[int, int]:
        """Record stored blocks as the share's and settle what was owed; (new blocks, bytes)."""
        added = added_bytes = 0
        for block_id, data in dict(blocks).items():
            inserted = await tx.execute(
                "INSERT INTO share_blocks (share_id, block_id, size) VALUES (?, ?, ?) "
                "ON CONFLICT (share_id, block_id) DO NOTHING",
                share_id,
                block_id,
                len(data),
            )
            if inserted:
                added += 1
                added_bytes += len(data)
                await tx.execute(
                    "DELETE FROM owed_blocks WHERE share_id = ? AND block_id = ?",
                    share_id,
                    block_id,
                )
        return added, added_bytes

    async def fetch(self, block_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for block_id in dict.fromkeys(block_ids):
            try:
                out[block_id] = await self.store.get(BlockId(block_id))
            except BlockNotFoundError as exc:
                raise NotFound(
                    "block is recorded but missing from the store", block_id=block_id.hex()
                ) from exc
            except StoreError as exc:
                raise Unavailable("the block store failed; retry later") from exc
        return out

    def local_path(self, block_id: bytes) -> Path | None:
        """Where a directory store keeps the block, so it can be sent with sendfile."""
        if isinstance(self.store, DirectoryBlockStore):
            return self.store.path_of(BlockId(block_id))
        return None

    async def presigned_url(self, block_id: bytes) -> str | None:
        if self._presigner is None:
            return None
        return await self._executor.run(self._presigner.url, block_id)
