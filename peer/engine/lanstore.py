"""What a device keeps so LAN peers can be served, and the relay caught up after an outage.

Three tables beside the share's own (``peer.device.store``), in the same SQLite database:

- ``lan_envelopes``: every envelope this replica accepted or sealed, by (device, counter), and
  whether the relay is known to hold it. A LAN peer asks for what its version vector lacks; when
  the relay is back, the envelopes it does not hold are forwarded (it answers an identical resend
  with its original sequence, so two devices forwarding the same envelope append it once).
- ``lan_chunks``: where the plaintext of a chunk lies in a synced file (path, offset, size), with
  the block it was sealed into. Served to LAN peers by chunk id (checked against the id before it
  leaves, so a file edited since is never served as the old chunk), and re-sealed into the block
  when the relay owes it.
- ``lan_manifests``: sealed manifest blocks of the versions this device wrote or downloaded, served
  to LAN peers by block id (a LAN-only download needs the manifest to know the chunks).
- ``lan_deferred``: sealed blocks this device wrote while the relay was away, and those named by
  envelopes it accepted from LAN peers (fetched from them at once), kept until the relay has them.
  Rebuilding them from the files is not enough: by the time the relay is back the file may hold a
  later version or sit under another name (a conflicted copy), the author may be gone (wiped,
  restored from an old backup), and a version nobody can upload is lost to every device.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS lan_envelopes (
    device BLOB NOT NULL, counter INTEGER NOT NULL, body BLOB NOT NULL,
    relayed INTEGER NOT NULL, PRIMARY KEY (device, counter)
);
CREATE TABLE IF NOT EXISTS lan_chunks (
    chunk_id BLOB PRIMARY KEY, block_id BLOB NOT NULL, epoch INTEGER NOT NULL,
    path TEXT NOT NULL, offset INTEGER NOT NULL, size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lan_chunks_by_block ON lan_chunks (block_id);
CREATE TABLE IF NOT EXISTS lan_manifests (block_id BLOB PRIMARY KEY, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS lan_deferred (block_id BLOB PRIMARY KEY, sealed BLOB NOT NULL);
"""

UNKNOWN_EPOCH = -1
"""A chunk downloaded over the LAN alone: which epoch sealed its block is found by trying."""


@dataclass(frozen=True, slots=True)
class ChunkPlace:
    """Where a chunk's plaintext lies on disk, and the block it was sealed into."""

    chunk_id: bytes
    block_id: bytes
    epoch: int
    path: str
    offset: int
    size: int


class LanStore:
    """The LAN tables of one share's database (``db`` is the share store's connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.db.executescript(SCHEMA)

    # -- envelopes -------------------------------------------------------------------------------

    def add_envelope(self, device: bytes, counter: int, body: bytes, *, relayed: bool) -> None:
        self.db.execute(
            "INSERT INTO lan_envelopes (device, counter, body, relayed) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device, counter) DO UPDATE SET relayed = MAX(relayed, excluded.relayed)",
            (device, counter, body, int(relayed)),
        )

    def mark_relayed(self, keys: Iterable[tuple[bytes, int]]) -> None:
        self.db.executemany(
            "UPDATE lan_envelopes SET relayed = 1 WHERE device = ? AND counter = ?", list(keys)
        )

    def envelopes_after(self, vector: dict[bytes, int]) -> Iterator[bytes]:
        """Stored envelopes past ``vector``, each device's in counter order."""
        rows = self.db.execute(
            "SELECT device, counter, body FROM lan_envelopes ORDER BY device, counter"
        ).fetchall()
        for device, counter, body in rows:
            if counter > vector.get(device, 0):
                yield body

    def unrelayed(
        self, exclude_device: bytes, limit: int | None = 500
    ) -> list[tuple[bytes, int, bytes]]:
        """Others' envelopes the relay is not known to hold, each device's in counter order
        (``limit`` None: all of them)."""
        return self.db.execute(
            "SELECT device, counter, body FROM lan_envelopes WHERE relayed = 0 AND device != ? "
            "ORDER BY device, counter LIMIT ?",
            (exclude_device, -1 if limit is None else limit),
        ).fetchall()

    def envelope(self, device: bytes, counter: int) -> bytes | None:
        row = self.db.execute(
            "SELECT body FROM lan_envelopes WHERE device = ? AND counter = ?", (device, counter)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def envelopes_from(self, device: bytes, counter: int) -> list[bytes]:
        """The device's envelopes from ``counter`` on, in counter order."""
        rows = self.db.execute(
            "SELECT body FROM lan_envelopes WHERE device = ? AND counter >= ? ORDER BY counter",
            (device, counter),
        )
        return [bytes(r[0]) for r in rows]

    def forget_from(self, device: bytes, counter: int) -> None:
        """Drop the device's envelopes from ``counter`` on: a line the relay will never hold
        (a fork that lost, envelopes a removal made invalid), never to be served to peers or
        forwarded again."""
        self.db.execute(
            "DELETE FROM lan_envelopes WHERE device = ? AND counter >= ?", (device, counter)
        )

    # -- chunks and manifests --------------------------------------------------------------------

    def add_chunks(self, places: Iterable[ChunkPlace]) -> None:
        self.db.executemany(
            "INSERT INTO lan_chunks (chunk_id, block_id, epoch, path, offset, size) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chunk_id) DO UPDATE SET "
            "block_id = excluded.block_id, epoch = MAX(epoch, excluded.epoch), "
            "path = excluded.path, offset = excluded.offset, size = excluded.size",
            [(p.chunk_id, p.block_id, p.epoch, p.path, p.offset, p.size) for p in places],
        )

    def chunk_place(self, chunk_id: bytes) -> ChunkPlace | None:
        row = self.db.execute(
            "SELECT chunk_id, block_id, epoch, path, offset, size FROM lan_chunks "
            "WHERE chunk_id = ?",
            (chunk_id,),
        ).fetchone()
        return None if row is None else ChunkPlace(*row)

    def block_place(self, block_id: bytes) -> ChunkPlace | None:
        row = self.db.execute(
            "SELECT chunk_id, block_id, epoch, path, offset, size FROM lan_chunks "
            "WHERE block_id = ? LIMIT 1",
            (block_id,),
        ).fetchone()
        return None if row is None else ChunkPlace(*row)

    def add_manifest(self, block_id: bytes, sealed: bytes) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO lan_manifests (block_id, sealed) VALUES (?, ?)",
            (block_id, sealed),
        )

    def defer_blocks(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO lan_deferred (block_id, sealed) VALUES (?, ?)", list(blocks)
        )

    def deferred_block(self, block_id: bytes) -> bytes | None:
        row = self.db.execute(
            "SELECT sealed FROM lan_deferred WHERE block_id = ?", (block_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def kept(self, block_ids: Iterable[bytes]) -> set[bytes]:
        """Those of ``block_ids`` held sealed here (deferred, or a manifest)."""
        return {
            b
            for b in block_ids
            if self.db.execute(
                "SELECT 1 FROM lan_deferred WHERE block_id = ? "
                "UNION ALL SELECT 1 FROM lan_manifests WHERE block_id = ?",
                (b, b),
            ).fetchone()
        }

    def deferred_ids(self) -> list[bytes]:
        return [r[0] for r in self.db.execute("SELECT block_id FROM lan_deferred ORDER BY 1")]

    def drop_deferred(self, block_ids: Iterable[bytes]) -> None:
        self.db.executemany(
            "DELETE FROM lan_deferred WHERE block_id = ?", [(b,) for b in block_ids]
        )

    def manifest(self, block_id: bytes) -> bytes | None:
        row = self.db.execute(
            "SELECT sealed FROM lan_manifests WHERE block_id = ?", (block_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])
