"""File content as the folder tree records it, and blocks as the storage pipeline wants them.

The tree's version holds at most 64 bytes: for a non-empty file the block id (the single data
block or the manifest) followed by the keyed content hash; for an empty file the content hash
alone. Which of the two block kinds it is, the block's own header says.

:class:`RelayBlocks` gives ``storage.ingest``/``storage.restore`` the block store they expect,
backed by the relay: uploads are held back and sent in batches (one "which do you have?" for the
lot, then only the missing ones, several requests in flight), so an interrupted upload resumes by
sending only what the relay lacks; downloads take prefetched blocks first, as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from peer.errors import IntegrityError, RelayUnreachable
from peer.remote.link import RelayLink
from seams import Executor, InlineExecutor
from storage.errors import StorageError
from storage.hashing import BlockId, verify_block_id
from storage.manifest import FileRef, RefKind
from storage.sealing import BlockType, parse_header

ID_BYTES = 32
FLUSH_BYTES = 8 << 20
FLUSHES_IN_FLIGHT = 2
MAX_PREFETCHED = 4096
PREFETCH_BATCH = 64  # blocks asked for in one request
PREFETCHES_IN_FLIGHT = 4

logger = logging.getLogger("peer.engine")


def encode_content(ref: FileRef) -> bytes:
    if ref.block_id is None:
        return ref.content_hash
    return bytes(ref.block_id) + ref.content_hash


def content_hash_of(content: bytes) -> bytes:
    return content[-ID_BYTES:]


def block_of(content: bytes) -> bytes | None:
    return content[:ID_BYTES] if len(content) == 2 * ID_BYTES else None


def decode_content(content: bytes, size: int, first_block: bytes | None) -> FileRef:
    """The storage reference of a version; ``first_block`` is its block's sealed bytes."""
    if len(content) == ID_BYTES:
        if size != 0:
            raise IntegrityError("a version without a block must be empty")
        return FileRef(RefKind.EMPTY, 0, content, None)
    if len(content) != 2 * ID_BYTES or first_block is None:
        raise IntegrityError("a version's content reference is malformed")
    try:
        kind = parse_header(first_block).block_type
    except Exception as exc:
        raise IntegrityError(f"a version's block is not a driftsync block: {exc}") from exc
    ref_kind = RefKind.MANIFEST if kind is BlockType.MANIFEST else RefKind.CHUNK
    try:
        return FileRef(ref_kind, size, content[ID_BYTES:], BlockId(content[:ID_BYTES]))
    except Exception as exc:
        raise IntegrityError(f"a version's content reference is invalid: {exc}") from exc


class RelayBlocks:
    """The block-store duck type ``storage`` uses (``has_many``, ``put``, ``get``) on the relay."""

    def __init__(self, link: RelayLink, share: str, executor: Executor | None = None) -> None:
        self.link = link
        self.share = share
        self.executor = executor or InlineExecutor()
        self.known: set[bytes] = set()  # at the relay for sure
        # Sealed blocks are fresh bytearrays nobody changes: held and sent as they are (a copy
        # of every uploaded byte cost more than the AES that made it).
        self.pending: dict[bytes, bytes | bytearray] = {}
        self.pending_bytes = 0
        self.flushing: list[asyncio.Future[None]] = []
        self.prefetched: dict[bytes, bytes] = {}
        self.incoming: dict[bytes, asyncio.Future[None]] = {}  # block → its prefetch in flight
        self._prefetching: set[asyncio.Future[None]] = set()
        self.verified: set[bytes] = set()  # prefetched blocks put back after verification
        self.uploaded_blocks = 0
        self.uploaded_bytes = 0
        # With LAN peers the relay may be away: blocks wait (``deferred``) and are rebuilt from
        # the files when it is back (``peer.engine.lanpass``); ``offline`` skips trying.
        self.defer_when_unreachable = False
        self.offline = False
        # Told when a batch found the relay unreachable, so the pass goes on without it.
        self.on_unreachable: Callable[[RelayUnreachable], None] | None = None
        self.deferred: set[bytes] = set()
        self.keep_deferred: Callable[[Mapping[bytes, bytes | bytearray]], None] | None = None
        # Sealed manifests seen going up or coming down, so LAN peers can be served them.
        self.manifests: dict[bytes, bytes] = {}

    async def has(self, block_id: bytes) -> bool:
        return block_id in self.known or block_id in self.pending

    async def has_many(self, block_ids: Iterable[bytes]) -> set[bytes]:
        return {b for b in block_ids if b in self.known or b in self.pending}

    async def put(self, block_id: bytes, data: bytes | bytearray, *, verify: bool = True) -> bool:
        if block_id in self.known or block_id in self.pending:
            return False
        self._keep_manifests([(block_id, data)])
        self.pending[block_id] = data
        self.pending_bytes += len(data)
        if self.pending_bytes >= FLUSH_BYTES:
            # Upload in the background while sealing goes on; at most FLUSHES_IN_FLIGHT
            # batches are held in memory, so a 5 GB file still streams in bounded memory.
            while len(self.flushing) >= FLUSHES_IN_FLIGHT:
                await self.flushing.pop(0)
            batch, self.pending, self.pending_bytes = self.pending, {}, 0
            self.flushing.append(asyncio.ensure_future(self._send(batch)))
        return True

    async def flush(self) -> None:
        """Send everything held back; returns when the relay has all of it."""
        flushing, self.flushing = self.flushing, []
        try:
            for task in flushing:
                await task
        finally:
            for task in flushing:
                if not task.done():
                    task.cancel()
        if self.pending:
            batch, self.pending, self.pending_bytes = self.pending, {}, 0
            await self._send(batch)

    async def _send(self, pending: dict[bytes, bytes | bytearray]) -> None:
        """Ask once which of a batch the relay has, upload only the others."""
        if self.offline and self.defer_when_unreachable:
            self._defer(pending)
            return
        try:
            have = await self.link.have_blocks(self.share, list(pending))
        except RelayUnreachable as exc:
            if not self.defer_when_unreachable:
                raise
            self.offline = True
            if self.on_unreachable is not None:
                self.on_unreachable(exc)
            self._defer(pending)
            return
        missing = [(b, d) for b, d in pending.items() if b not in have]
        if missing:
            await self.link.put_blocks(self.share, missing)
            self.uploaded_blocks += len(missing)
            self.uploaded_bytes += sum(len(d) for _, d in missing)
        self.known.update(pending)

    def cancel_prefetch(self) -> None:
        """The daemon stops: a prefetch still in flight must not log in to the relay again."""
        for task in list(self._prefetching):
            task.cancel()

    def _defer(self, pending: dict[bytes, bytes | bytearray]) -> None:
        self.deferred.update(pending)
        if self.keep_deferred is not None:
            self.keep_deferred(pending)

    async def prefetch(self, block_ids: Iterable[bytes]) -> None:
        """Start fetching blocks wanted soon (small files' blocks, many to a request, several
        requests in flight) and return: ``get`` takes each as it arrives, so fetching overlaps
        opening and writing. A failed prefetch costs only time: ``get`` then asks for the block
        alone."""
        if self.offline:
            return  # the relay is away: downloads take what LAN peers have, and nothing more
        wanted = [b for b in dict.fromkeys(block_ids) if b not in self.prefetched]
        wanted = [b for b in wanted if b not in self.incoming]
        if not wanted:
            return
        if len(self.prefetched) + len(self.incoming) + len(wanted) > MAX_PREFETCHED:
            self.prefetched.clear()
        loop = asyncio.get_running_loop()
        groups = [wanted[i : i + PREFETCH_BATCH] for i in range(0, len(wanted), PREFETCH_BATCH)]
        arrivals: list[asyncio.Future[None]] = [loop.create_future() for _ in groups]
        for group, arrival in zip(groups, arrivals, strict=True):
            for block_id in group:
                self.incoming[block_id] = arrival
        task = asyncio.ensure_future(self._prefetch_all(groups, arrivals))
        self._prefetching.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._prefetching.discard)

    async def _prefetch_all(
        self, groups: list[list[bytes]], arrivals: list[asyncio.Future[None]]
    ) -> None:
        gate = asyncio.Semaphore(PREFETCHES_IN_FLIGHT)

        async def one(group: list[bytes], arrival: asyncio.Future[None]) -> None:
            try:
                async with gate:
                    found = await self.link.get_blocks(self.share, group)
                self.prefetched.update(
                    (b, d) for b, d in found.items() if self.incoming.get(b) is arrival
                )
            except Exception as exc:
                # Whatever went wrong (offline, a refusal), get() asks for each block alone and
                # reports it there; nobody awaits this task, so nothing may escape it.
                logger.debug(
                    "share %s: prefetching %d blocks failed: %s", self.share, len(group), exc
                )
            finally:
                for block_id in group:
                    if self.incoming.get(block_id) is arrival:
                        del self.incoming[block_id]
                if not arrival.done():
                    arrival.set_result(None)

        await asyncio.gather(*(one(g, a) for g, a in zip(groups, arrivals, strict=True)))

    def keep(self, block_id: bytes, data: bytes) -> None:
        """Hold a block already verified for the next ``get`` (a manifest read twice)."""
        self.prefetched[block_id] = data
        self.verified.add(block_id)
        self._keep_manifests([(block_id, data)])

    async def get(self, block_id: bytes, *, verify: bool = True) -> bytes:
        """A block's bytes; ``verify=False`` leaves checking them against ``block_id`` to the
        caller (one that opens the block in the same executor hop, see ``storage.sealing``)."""
        arriving = self.incoming.get(block_id)
        if arriving is not None:
            # Shielded: this caller giving up must not cancel the fetch for the others.
            await asyncio.shield(arriving)
        data = self.prefetched.pop(block_id, None)
        if data is None:
            self.verified.discard(block_id)
        if data is None:
            data = await self.link.get_block(self.share, block_id)
        if verify and block_id not in self.verified:
            try:
                await self.executor.run(verify_block_id, BlockId(block_id), data)
            except StorageError as exc:
                raise IntegrityError(f"the relay sent wrong bytes for a block: {exc}") from exc
        self.known.add(block_id)
        if verify:
            self._keep_manifests([(block_id, data)])
        return data

    def _keep_manifests(self, blocks: Iterable[tuple[bytes, bytes | bytearray]]) -> None:
        if len(self.manifests) > MAX_PREFETCHED:
            self.manifests.clear()  # nobody took them: an index step that never ran
        for block_id, data in blocks:
            try:
                if parse_header(data).block_type is BlockType.MANIFEST:
                    self.manifests[block_id] = bytes(data)
            except StorageError:  # not a block: the upload or the check says so
                continue

    async def get_many(self, block_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        return {b: await self.get(b) for b in block_ids}
