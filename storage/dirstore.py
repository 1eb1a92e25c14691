"""A block store in a local directory: the relay's embedded default and the demo's store.

Layout: ``<root>/blocks/<first two hex digits>/<64 hex digits>`` (256 fan-out directories keep
any one directory small) and ``<root>/tmp/`` for writes in progress. A put writes a temp file,
fsyncs it, hard-links it into place (a link never replaces an existing block) and fsyncs the
directory, so a crash or a full disk never leaves a partial block under a block id.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import suppress
from pathlib import Path

from storage.blockstore import BlockStore
from storage.errors import BlockNotFoundError, StorageError, StoreError, StoreFullError
from storage.hashing import BlockId, Buffer, parse_block_id, verify_block_id

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# Temp files older than this are leftovers of a crash; younger ones may be another writer's.
_STALE_TMP_S = 3600


def write_fully(fd: int, data: Buffer) -> None:
    """The store's one file-writing seam (tests replace it to inject I/O errors)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryBlockStore(BlockStore):
    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, executor: Executor | None = None
    ) -> None:
        super().__init__(executor)
        self.root = Path(root)
        self.fsync = fsync
        self._blocks = self.root / "blocks"
        self._tmp = self.root / "tmp"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            for i in range(256):
                (self._blocks / f"{i:02x}").mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_files()
        except OSError as exc:
            raise _store_error(exc, f"cannot open block store at {self.root}") from exc

    def __repr__(self) -> str:
        return f"DirectoryBlockStore({str(self.root)!r})"

    def path_of(self, block_id: BlockId) -> Path:
        name = block_id.hex()
        return self._blocks / name[:2] / name

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - _STALE_TMP_S
        for entry in os.scandir(self._tmp):
            with suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def _has_many_sync(self, block_ids: list[BlockId]) -> set[BlockId]:
        return {b for b in block_ids if self.path_of(b).exists()}

    def _put_sync(self, block_id: BlockId, data: Buffer) -> bool:
        final = self.path_of(block_id)
        if final.exists():
            return False
        tmp = self._tmp / f"{block_id.hex()}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                write_fully(fd, data)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            # link, unlike rename, never replaces: a concurrent put of the same block wins once.
            try:
                os.link(tmp, final)
                created = True
            except FileExistsError:
                created = False
            os.unlink(tmp)
            if self.fsync and created:
                _fsync_dir(final.parent)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(tmp)
            raise _store_error(exc, f"cannot store block {block_id.hex()} in {self.root}") from exc
        return created

    def _get_sync(self, block_id: BlockId) -> bytes:
        try:
            data = self.path_of(block_id).read_bytes()
        except FileNotFoundError:
            raise BlockNotFoundError(block_id.hex(), str(self)) from None
        except OSError as exc:
            raise _store_error(exc, f"cannot read block {block_id.hex()}") from exc
        verify_block_id(block_id, data)
        return data

    def _iter_ids_sync(self) -> Iterator[BlockId]:
        for fan in sorted(os.scandir(self._blocks), key=lambda e: e.name):
            if not fan.is_dir():
                continue
            for entry in os.scandir(fan.path):
                with suppress(StorageError):
                    yield parse_block_id(entry.name)


def _store_error(exc: OSError, what: str) -> StoreError:
    if exc.errno in _FULL_ERRNOS:
        return StoreFullError(f"{what}: the disk is full ({exc.strerror})")
    return StoreError(f"{what}: {exc.strerror or exc}")
