"""One share as its LAN peers see it: envelopes and chunks served, envelopes and chunks received.

``ShareLan`` is what the LAN session asks about a share (``EnvelopeSource``, ``ChunkSource`` and
chunk verification) and what the share's sync pass uses: the envelopes LAN peers sent (applied by
the pass, through the same replica checks as the relay's), ``push`` of new local envelopes,
``fetch`` of chunks from every peer at once, and ``regenerate`` of a block the relay owes from
the file that holds its chunk. ``peers`` is ``None`` until the daemon starts the LAN, so a
one-shot ``drift sync`` behaves exactly as before.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from peer.engine.lanstore import UNKNOWN_EPOCH, LanStore
from peer.fs import FileSystem, FsError
from protocol.envelope import Envelope
from protocol.errors import ProtocolError
from protocol.vv import VersionVector
from storage.errors import StorageError
from storage.hashing import chunk_id_of
from storage.sealing import seal_chunk

if TYPE_CHECKING:
    from peer.engine.replica import ShareReplica
    from peer.lan.peers import LanPeers

logger = logging.getLogger("peer.engine")

MAX_CACHE_BYTES = 4 << 30
"""Chunks of unfinished large downloads kept on disk; past this the cache starts over."""

MAX_INBOX = 100_000
"""Envelopes from LAN peers waiting for the next pass; past this, the relay brings the rest."""


class ShareLan:
    """The LAN side of one share: served from ``store`` and the folder ``fs``."""

    def __init__(
        self,
        replica: Callable[[], ShareReplica],
        store: LanStore,
        fs: FileSystem,
        cache_dir: Path | None = None,
    ) -> None:
        self._replica = replica
        self.store = store
        self.fs = fs
        self.cache = ChunkCache(cache_dir) if cache_dir is not None else None
        self.share_id = replica().share_id
        self.peers: LanPeers | None = None
        self.wake: Callable[[], None] = lambda: None
        self._inbox: list[Envelope] = []
        # Blocks named by envelopes accepted from LAN peers, to fetch from them and keep until
        # the relay has them (``LanPass.hold_lan_blocks``); None until the first pass lists
        # those of envelopes accepted before a restart.
        self.to_hold: set[bytes] | None = None
        self.bytes_from_peers = 0
        self.chunks_served = 0

    @property
    def active(self) -> bool:
        return self.peers is not None

    @property
    def own_line_unsettled(self) -> bool:
        """Restored from a backup (a new install), and the relay has taken no envelope of ours
        since: it may hold later envelopes of ours that what we write now forks. Until it takes
        one, our own envelopes stay off the LAN: a fork that peers applied could never reach the
        relay, nor anything they wrote after seeing it."""
        return bool(self._replica().store.get("restored", False))

    def own_line_settled(self) -> None:
        """The relay took an envelope of ours: our counters are the ones it holds."""
        if self.own_line_unsettled:
            self._replica().store.set("restored", False)

    def _shareable(self, envelope: Envelope) -> bool:
        return not (
            envelope.header.device == self._replica().device.device_id and self.own_line_unsettled
        )

    # -- what the session asks -------------------------------------------------------------------

    def vector(self, share: bytes) -> VersionVector:
        return VersionVector(self._replica().tips_vector())

    def envelopes_after(self, share: bytes, vector: VersionVector) -> Iterable[Envelope]:
        for body in self.store.envelopes_after(dict(vector)):
            try:
                envelope = Envelope.decode(body)
            except ProtocolError:  # pragma: no cover - only verified envelopes are stored
                continue
            if self._shareable(envelope):
                yield envelope

    def chunk(self, share: bytes, chunk_id: bytes) -> bytes | None:
        """A chunk from the file that holds it (checked first), or a sealed block kept here (a
        manifest, or one the relay lacks) by id."""
        place = self.store.chunk_place(chunk_id)
        if place is not None:
            try:
                data = self.fs.read_range(place.path, place.offset, place.size)
            except FsError:
                data = b""
            if len(data) == place.size and self._chunk_id(data) == chunk_id:
                self.chunks_served += 1
                return data
            # The file moved or changed since: not ours to serve any more.
        if self.cache is not None:
            cached = self.cache.get(chunk_id, self._chunk_id)
            if cached is not None:
                return cached
        return self.store.manifest(chunk_id) or self.store.deferred_block(chunk_id)

    def verify(self, share: bytes, chunk_id: bytes, data: bytes) -> bool:
        """A chunk names its plaintext (keyed BLAKE3); a manifest block its sealed bytes."""
        return self._chunk_id(data) == chunk_id or hashlib.sha256(data).digest() == chunk_id

    def chunk_id_of(self, data: bytes) -> bytes:
        return self._chunk_id(data)

    def _chunk_id(self, data: bytes) -> bytes:
        return bytes(chunk_id_of(self._replica().crypto.share_keys.chunk_id_key, data))

    # -- envelopes in and out --------------------------------------------------------------------

    def received(self, envelopes: Sequence[Envelope]) -> None:
        """Envelopes a peer sent; the next pass validates and applies them."""
        if len(self._inbox) + len(envelopes) > MAX_INBOX:
            logger.warning("share %s: too many LAN envelopes waiting; dropped", self.share_id.hex())
            return
        self._inbox.extend(envelopes)
        self.wake()

    def requeue(self, envelopes: Sequence[Envelope]) -> None:
        """Envelopes that must wait (for their chain or a predecessor): tried again next pass."""
        self._inbox[:0] = envelopes[: MAX_INBOX - len(self._inbox)]

    def take_inbox(self) -> list[Envelope]:
        out, self._inbox = self._inbox, []
        return out

    async def push(self, envelopes: Sequence[Envelope]) -> int:
        envelopes = [e for e in envelopes if self._shareable(e)]
        if self.peers is None or not envelopes:
            return 0
        return await self.peers.push(self.share_id, envelopes)

    # -- chunks ----------------------------------------------------------------------------------

    def has_peers(self) -> bool:
        return self.peers is not None and bool(self.peers.links(self.share_id))

    async def fetch(self, ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """Chunks (or manifests) by id from every peer with the share, in parallel."""
        if not ids or not self.has_peers():
            return {}
        assert self.peers is not None
        result = await self.peers.fetch(self.share_id, ids)
        self.bytes_from_peers += sum(result.bytes_from.values())
        return result.chunks

    def keep_deferred(self, blocks: Mapping[bytes, bytes | bytearray]) -> None:
        """Blocks the relay could not take now: kept until it has them (see ``lanstore``)."""
        self.store.defer_blocks((b, bytes(d)) for b, d in blocks.items())

    def regenerate(self, block_id: bytes) -> bytes | None:
        """The sealed bytes of ``block_id``, rebuilt from a local file (blocks seal
        deterministically), or a stored manifest; None if this device cannot."""
        kept = self.store.deferred_block(block_id) or self.store.manifest(block_id)
        if kept is not None:
            return kept
        place = self.store.block_place(block_id)
        if place is None:
            return None
        try:
            data = self.fs.read_range(place.path, place.offset, place.size)
        except FsError:
            return None
        if len(data) != place.size or self._chunk_id(data) != place.chunk_id:
            return None
        crypto = self._replica().crypto
        epochs = (
            [place.epoch]
            if place.epoch != UNKNOWN_EPOCH
            else list(range(crypto.ring.latest_epoch, -1, -1))
        )
        for epoch in epochs:
            try:
                sealed = seal_chunk(crypto.share_keys, crypto.sealing_key(epoch), data)
            except (StorageError, ProtocolError, KeyError):
                continue
            if bytes(sealed.block.block_id) == block_id:
                return bytes(sealed.block.data)
        return None


class ChunkCache:
    """Chunks of a large download in progress, on disk, so a broken link costs only what was in
    flight: the next attempt (a new session, another peer) takes them from here. Each is checked
    against its id when read; a finished download drops its chunks."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._bytes: int | None = None  # what the directory holds, counted once then tracked

    def _path(self, chunk_id: bytes) -> Path:
        return self.directory / chunk_id.hex()

    def get(self, chunk_id: bytes, id_of: Callable[[bytes], bytes]) -> bytes | None:
        try:
            data = self._path(chunk_id).read_bytes()
        except OSError:
            return None
        return data if id_of(data) == chunk_id else None

    def put(self, chunk_id: bytes, data: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._bytes is None:
                self._bytes = self._size()
            if self._bytes + len(data) > MAX_CACHE_BYTES:
                self.clear()
            tmp = self._path(chunk_id).with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(self._path(chunk_id))
            self._bytes += len(data)
        except OSError as exc:  # a cache only: the download goes on without it
            logger.info("cannot keep a chunk in the LAN cache: %s", exc)

    def put_many(self, chunks: dict[bytes, bytes]) -> None:
        for chunk_id, data in chunks.items():
            self.put(chunk_id, data)

    def drop(self, chunk_ids: Iterable[bytes]) -> None:
        for chunk_id in chunk_ids:
            self._path(chunk_id).unlink(missing_ok=True)
        self._bytes = None  # recounted on the next put

    def clear(self) -> None:
        for path in self.directory.glob("*"):
            path.unlink(missing_ok=True)
        self._bytes = 0

    def _size(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("*") if p.is_file())
