"""A version's content from LAN peers first, the relay for the rest; and where chunks lie.

LAN peers serve plaintext chunks by chunk id and sealed manifests by block id (``ShareLan``). A
download asks them for the whole file (a one-chunk file's content hash is its chunk id) and its
first block at once: the file itself ends it; a manifest lists the chunks, fetched window by
window from every peer in parallel, the next window asked while the current one is written.
Chunks no peer delivered come from the relay (sealed blocks, opened as usual). Every chunk is
checked against its id where it arrives, and the whole against the version's size and content
hash before the file is renamed into place.

``index_version`` records where each chunk of a file written or read now lies, so this device
serves it to its peers and can rebuild a block the relay owes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from peer.engine.content import RelayBlocks, block_of, content_hash_of
from peer.engine.keys import ShareCrypto
from peer.engine.lanshare import ShareLan
from peer.engine.lanstore import UNKNOWN_EPOCH, ChunkPlace
from peer.errors import IntegrityError, RelayUnreachable
from seams import Executor
from storage.errors import StorageError
from storage.hashing import BlockId, ChunkId, ContentHasher
from storage.manifest import Manifest, ManifestEntry, PartsManifest, open_manifest
from storage.sealing import BlockType, open_chunk, parse_header

WINDOW_BYTES = 32 << 20
WINDOW_CHUNKS = 64
CACHE_FROM_BYTES = 16 << 20
"""Downloads this large keep what LAN peers sent on disk until done, so they resume."""


@dataclass(frozen=True, slots=True)
class Want:
    chunk_id: bytes
    block_id: bytes
    epoch: int
    size: int


@dataclass
class LanPlan:
    """What to fetch: the chunks in order (or the whole file already here), and manifests."""

    wants: list[Want]
    whole: bytes | None = None
    manifests: dict[bytes, bytes] | None = None


async def plan_from_lan(
    lan: ShareLan, content: bytes, size: int, blocks: RelayBlocks, crypto: ShareCrypto
) -> LanPlan | None:
    """The chunks of a version, learnt from LAN peers; None if they hold neither the file nor
    its manifest (then the relay's path is taken as before)."""
    first = block_of(content)
    if first is None or not lan.has_peers():
        return None
    whole_id = content_hash_of(content)
    # Kept here for the relay (``LanPass.hold_lan_blocks``): read here, not over the LAN again.
    sealed = lan.store.deferred_block(first) or lan.store.manifest(first)
    if sealed is None:
        got = await lan.fetch([whole_id, first])
        whole = got.get(whole_id)
        if whole is not None and len(whole) == size:
            return LanPlan([Want(whole_id, first, UNKNOWN_EPOCH, size)], whole=whole)
        sealed = got.get(first)
        if sealed is None:
            return None
    try:
        if parse_header(sealed).block_type is not BlockType.MANIFEST:
            if lan.store.deferred_block(first) is not None:
                return LanPlan([Want(whole_id, first, UNKNOWN_EPOCH, size)])  # read as held
            return None
        top = open_manifest(crypto.share_keys, crypto.keyring, sealed, block_id=BlockId(first))
    except StorageError as exc:
        raise IntegrityError(f"a LAN peer's manifest does not open: {exc}") from exc
    if top.file_size != size or top.content_hash != content_hash_of(content):
        raise IntegrityError("a manifest describes another file than the version asked for")
    manifests = {first: sealed}
    if isinstance(top, Manifest):
        return LanPlan([_want(e) for e in top.entries], manifests=manifests)
    assert isinstance(top, PartsManifest)
    wants: list[Want] = []
    for part in top.parts:
        part_sealed = (await lan.fetch([part.block_id])).get(part.block_id)
        if part_sealed is None:
            part_sealed = await blocks.get(part.block_id)
        child = open_manifest(
            crypto.share_keys, crypto.keyring, part_sealed, expected_epoch=part.epoch
        )
        if not isinstance(child, Manifest) or child.content_hash != part.content_hash:
            raise IntegrityError("a part of a file does not match its entry in the file's")
        manifests[bytes(part.block_id)] = part_sealed
        wants.extend(_want(e) for e in child.entries)
    return LanPlan(wants, manifests=manifests)


def _want(entry: ManifestEntry) -> Want:
    return Want(bytes(entry.chunk_id), bytes(entry.block_id), entry.epoch, entry.size)


async def read_planned(
    plan: LanPlan,
    lan: ShareLan,
    blocks: RelayBlocks,
    crypto: ShareCrypto,
    executor: Executor,
    content: bytes,
    size: int,
    relay_away: bool,
) -> AsyncIterator[bytes]:
    """The planned chunks in order, each verified; the whole checked at the end."""
    if plan.whole is not None:
        yield plan.whole  # verified against the content hash, which is its chunk id
        return
    windows = list(_windows(plan.wants))
    hasher = ContentHasher(crypto.share_keys.chunk_id_key)
    cache = lan.cache if size >= CACHE_FROM_BYTES else None
    caching: list[asyncio.Future[None]] = []

    async def fetch(window: list[Want]) -> dict[bytes, bytes]:
        got: dict[bytes, bytes] = {}
        for w in window:
            held = lan.store.deferred_block(w.block_id)
            if held is not None:
                data = await executor.run(_open_held, crypto, held, w)
                if data is not None:
                    got[w.chunk_id] = data
        if cache is not None:
            for w in window:
                if w.chunk_id in got:
                    continue
                data = await executor.run(cache.get, w.chunk_id, lan.chunk_id_of)
                if data is not None:
                    got[w.chunk_id] = data
        fresh = await lan.fetch([w.chunk_id for w in window if w.chunk_id not in got])
        if cache is not None and fresh:
            # Off the critical path: the file is written meanwhile; only the end waits for it.
            caching.append(asyncio.ensure_future(executor.run(cache.put_many, fresh)))
        got.update(fresh)
        missing = [w for w in window if w.chunk_id not in got]
        if missing and relay_away:
            raise RelayUnreachable(
                f"{len(missing)} chunk(s) are on no LAN peer and the relay is unreachable"
            )
        for w in missing:
            sealed = await blocks.get(w.block_id)
            try:
                got[w.chunk_id] = await executor.run(
                    open_chunk,
                    crypto.share_keys,
                    crypto.keyring,
                    sealed,
                    chunk_id=ChunkId(w.chunk_id),
                    expected_epoch=w.epoch,
                )
            except StorageError as exc:
                raise IntegrityError(f"a block does not open to its chunk: {exc}") from exc
        return got

    ahead: asyncio.Task[dict[bytes, bytes]] | None = None
    try:
        for i, window in enumerate(windows):
            got = await (ahead if ahead is not None else fetch(window))
            ahead = asyncio.ensure_future(fetch(windows[i + 1])) if i + 1 < len(windows) else None
            for w in window:
                data = got[w.chunk_id]
                if len(data) != w.size:
                    raise IntegrityError(f"a chunk of {w.size} bytes came as {len(data)}")
                await executor.run(hasher.update, data)
                yield data
    finally:
        if ahead is not None:
            ahead.cancel()
        # What reached us stays cached even if this attempt fails: the next one resumes.
        await asyncio.gather(*caching, return_exceptions=True)
    if hasher.size != size or hasher.digest() != content_hash_of(content):
        raise IntegrityError("the content from LAN peers does not match the version")
    if cache is not None:
        await executor.run(cache.drop, [w.chunk_id for w in plan.wants])


def _open_held(crypto: ShareCrypto, sealed: bytes, want: Want) -> bytes | None:
    """The chunk of a block kept here, or None if it does not open to it (then peers serve it)."""
    try:
        return bytes(
            open_chunk(
                crypto.share_keys,
                crypto.keyring,
                sealed,
                chunk_id=ChunkId(want.chunk_id),
                expected_epoch=None if want.epoch == UNKNOWN_EPOCH else want.epoch,
            )
        )
    except StorageError:
        return None


def _windows(wants: list[Want]) -> list[list[Want]]:
    out: list[list[Want]] = []
    window: list[Want] = []
    size = 0
    for w in wants:
        if window and (len(window) >= WINDOW_CHUNKS or size + w.size > WINDOW_BYTES):
            out.append(window)
            window, size = [], 0
        window.append(w)
        size += w.size
    if window:
        out.append(window)
    return out


def index_version(
    lan: ShareLan,
    path: str,
    content: bytes,
    size: int,
    blocks: RelayBlocks,
    crypto: ShareCrypto,
    *,
    epoch: int = UNKNOWN_EPOCH,
    plan: LanPlan | None = None,
) -> None:
    """Record where the chunks of the version now at ``path`` lie (a manifest's, if known)."""
    first = block_of(content)
    if first is None or size == 0:
        return
    if plan is not None and plan.whole is None:
        wants = plan.wants
        for block_id, sealed in (plan.manifests or {}).items():
            lan.store.add_manifest(block_id, sealed)
    else:
        sealed = blocks.manifests.pop(first, None) or lan.store.manifest(first)
        wants = [Want(content_hash_of(content), first, epoch, size)]
        if sealed is not None:
            try:
                top = open_manifest(crypto.share_keys, crypto.keyring, sealed)
            except StorageError:
                return
            lan.store.add_manifest(first, sealed)
            if not isinstance(top, Manifest):
                return  # a file of parts: its chunks are not served (part manifests aside)
            wants = [_want(e) for e in top.entries]
    offset = 0
    places = []
    for w in wants:
        places.append(ChunkPlace(w.chunk_id, w.block_id, w.epoch, path, offset, w.size))
        offset += w.size
    lan.store.add_chunks(places)
