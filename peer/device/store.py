"""Per-share state of a device, in one SQLite database under the device's home.

What it keeps, and why it must survive a restart:

- ``meta``: the relay cursor, this device's envelope counter and last envelope hash (written and
  fsynced before an envelope leaves), the install id that wrote them, the share's state word;
- ``chain`` and ``epoch_keys``: the membership chain and the key ring (checked against the chain);
- ``updates``: every CRDT update applied, with who wrote it, the relay's sequence and append time
  (``relay_ms``; this device's receipt time ``time_ms`` for updates no relay has ordered yet), so
  the folder tree is rebuilt on start (on top of the saved tree, ``peer.engine.warm``) and history
  can be listed and restored "as of" a time;
- ``tips`` and ``certs``: each device's last accepted envelope and its certificate;
- ``outbox``: envelopes sealed but not yet acknowledged by the relay (resent after a crash);
- ``files`` and ``file_errors``: the local index (``peer.local.index``: its schema and migrations)
  lives in this same database: per local path what the disk looked like when last scanned, its
  sync state, and for a synced path the tree path, entry and version it was synced as (the
  *base* a change is compared with); and why a file is not synced, kept until it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.local.index import LocalIndex, SyncState
from protocol.codec import pack, unpack
from seams import InlineExecutor
from seams.statedb import FILE_STATE_DATABASES, StateDatabases

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS chain (height INTEGER PRIMARY KEY, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS epoch_keys (epoch INTEGER PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS updates (
    ord INTEGER PRIMARY KEY AUTOINCREMENT,
    device BLOB NOT NULL, install BLOB NOT NULL, seq INTEGER NOT NULL,
    seen BLOB NOT NULL, body BLOB NOT NULL, relay_seq INTEGER, time_ms INTEGER NOT NULL,
    relay_ms INTEGER,
    UNIQUE (device, install, seq)
);
CREATE TABLE IF NOT EXISTS tips (device BLOB PRIMARY KEY, counter INTEGER NOT NULL,
                                 hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS certs (device BLOB PRIMARY KEY, cert BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (counter INTEGER PRIMARY KEY, envelope BLOB NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StoredUpdate:
    device: bytes
    install: bytes
    seq: int
    seen: dict[str, int]
    body: bytes
    relay_seq: int | None
    time_ms: int  # this device's clock when it received or wrote the update
    relay_ms: int | None = None  # the relay's clock when it appended the update's envelope

    @property
    def ordered_ms(self) -> int:
        """When the update happened for "as of" questions: the relay's time, which every device
        shares, or else (an update only seen on the LAN so far) this device's receipt time."""
        return self.time_ms if self.relay_ms is None else self.relay_ms


@dataclass(frozen=True, slots=True)
class SyncedFile:
    """What was last synced at ``path`` (a tree path); ``disk_path`` is its name on this disk."""

    path: str
    disk_path: str
    entry: str
    kind: str  # "file" | "dir"
    size: int
    mtime_ns: int
    inode: int
    executable: bool
    content: bytes | None
    version: str | None
    synced_ns: int = 0  # when it was observed: a file whose mtime is not older is re-read
    state: SyncState = SyncState.SYNCED  # otherwise changed here since (see the local index)
    content_hash: bytes | None = None  # BLAKE3 of the bytes when known (the scanner's)


@dataclass(frozen=True, slots=True)
class FileError:
    path: str
    op: str
    reason: str
    since_ms: int
    retry_at_ms: int | None


_STATES = {s.value: s for s in SyncState}
_SAME_STAT = (
    "(files.kind = excluded.kind AND files.size = excluded.size AND "
    "files.mtime_ns = excluded.mtime_ns AND files.inode = excluded.inode)"
)


class ShareStore:
    def __init__(self, path: Path, databases: StateDatabases = FILE_STATE_DATABASES) -> None:
        """Open the share's state at ``path`` (a file, or what ``databases`` keeps under that
        name); the directory holds the share's other state (the saved tree, the LAN cache)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.db = databases.connect(path)
        self.db.executescript(SCHEMA)
        self._add_missing_columns()
        # The local index's tables, created or migrated (an older state's base adopted) here.
        self.index = LocalIndex.within(self.db, InlineExecutor())
        self._every = 500
        self._ticks = 0
        self._error_paths: set[str] | None = None  # paths with an error, once looked up
        # The files table as last read, kept in step by put_file/forget_file: a pass asks for
        # it several times, and only this connection writes it.
        self._files: dict[str, SyncedFile] | None = None
        self._tree_of: dict[str, str] = {}  # disk path → tree path, of the rows in _files
        # The tips table as last read, kept in step by set_tip/forget_tip (only this connection
        # writes it): every envelope applied asks for all of them.
        self._tips: dict[bytes, tuple[int, bytes]] | None = None

    def close(self) -> None:
        self.db.close()

    def _add_missing_columns(self) -> None:
        """Stores written by an older version lack columns added since (all nullable)."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(updates)")}
        if "relay_ms" not in have:
            self.db.execute("ALTER TABLE updates ADD COLUMN relay_ms INTEGER")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing; inside a :meth:`batch` it joins the batch's transaction."""
        if self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            self._files = None
            self._tips = None
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def batch(self, every: int = 500) -> Iterator[None]:
        """Group many small writes into few commits (each commit is an fsync).

        What was written is committed on leaving, also on error (each write is a fact about
        the disk or the tree that stays true); :meth:`tick` commits every ``every`` calls.
        """
        if self.db.in_transaction:
            yield
            return
        self._every, self._ticks = every, 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            if self.db.in_transaction:
                self.db.execute("COMMIT")

    def tick(self) -> None:
        """One write of a batch done; commit when ``every`` have accumulated."""
        self._ticks += 1
        if self.db.in_transaction and self._ticks >= self._every:
            self._ticks = 0
            self.db.execute("COMMIT")
            self.db.execute("BEGIN IMMEDIATE")

    # -- meta ------------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else unpack(row[0])

    def set(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, pack(value)),
        )

    # -- chain and keys --------------------------------------------------------------------------

    def chain_entries(self) -> list[bytes]:
        return [r[0] for r in self.db.execute("SELECT entry FROM chain ORDER BY height")]

    def add_chain_entries(self, start_height: int, entries: list[bytes]) -> None:
        with self.transaction():
            for offset, entry in enumerate(entries):
                self.db.execute(
                    "INSERT OR IGNORE INTO chain (height, entry) VALUES (?, ?)",
                    (start_height + offset, entry),
                )

    def epoch_keys(self) -> list[bytes]:
        return [r[0] for r in self.db.execute("SELECT key FROM epoch_keys ORDER BY epoch")]

    def set_epoch_keys(self, keys: tuple[bytes, ...]) -> None:
        with self.transaction():
            for epoch, key in enumerate(keys):
                self.db.execute(
                    "INSERT OR REPLACE INTO epoch_keys (epoch, key) VALUES (?, ?)", (epoch, key)
                )

    # -- updates, tips, certificates, outbox -----------------------------------------------------

    def updates(self) -> list[StoredUpdate]:
        rows = self.db.execute(
            "SELECT device, install, seq, seen, body, relay_seq, time_ms, relay_ms FROM updates "
            "ORDER BY ord"
        )
        return [StoredUpdate(r[0], r[1], r[2], unpack(r[3]), r[4], r[5], r[6], r[7]) for r in rows]

    def update_keys(self) -> list[tuple[int, bytes, bytes, int]]:
        """(ord, device, install, seq) of every stored update, in the order they were stored:
        what a saved folder tree is checked against without reading a single update body."""
        rows = self.db.execute("SELECT ord, device, install, seq FROM updates ORDER BY ord")
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def last_update_ord(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(ord), 0) FROM updates").fetchone()
        return int(row[0])

    def updates_after(self, ord_: int) -> list[StoredUpdate]:
        """The updates stored after position ``ord_`` (see :meth:`update_keys`), in order."""
        rows = self.db.execute(
            "SELECT device, install, seq, seen, body, relay_seq, time_ms, relay_ms FROM updates "
            "WHERE ord > ? ORDER BY ord",
            (ord_,),
        )
        return [StoredUpdate(r[0], r[1], r[2], unpack(r[3]), r[4], r[5], r[6], r[7]) for r in rows]

    def record_update(self, update: StoredUpdate) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO updates "
            "(device, install, seq, seen, body, relay_seq, time_ms, relay_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                update.device,
                update.install,
                update.seq,
                pack(update.seen),
                update.body,
                update.relay_seq,
                update.time_ms,
                update.relay_ms,
            ),
        )

    def set_relay_seq(
        self, device: bytes, install: bytes, seq: int, relay_seq: int, relay_ms: int | None = None
    ) -> None:
        """Where the relay put an update we already had (ours, or one first seen on the LAN)."""
        self.db.execute(
            "UPDATE updates SET relay_seq = ?, relay_ms = COALESCE(relay_ms, ?) "
            "WHERE device = ? AND install = ? AND seq = ?",
            (relay_seq, relay_ms, device, install, seq),
        )

    def forget_update(self, device: bytes, install: bytes, seq: int) -> None:
        self.db.execute(
            "DELETE FROM updates WHERE device = ? AND install = ? AND seq = ?",
            (device, install, seq),
        )

    def forget_tip(self, device: bytes) -> None:
        self.db.execute("DELETE FROM tips WHERE device = ?", (device,))
        if self._tips is not None:
            self._tips.pop(device, None)

    def tips(self) -> dict[bytes, tuple[int, bytes]]:
        if self._tips is None:
            self._tips = {
                r[0]: (r[1], r[2])
                for r in self.db.execute("SELECT device, counter, hash FROM tips")
            }
        return dict(self._tips)

    def set_tip(self, device: bytes, counter: int, envelope_hash: bytes) -> None:
        self.db.execute(
            "INSERT INTO tips (device, counter, hash) VALUES (?, ?, ?) ON CONFLICT (device) "
            "DO UPDATE SET counter = excluded.counter, hash = excluded.hash",
            (device, counter, envelope_hash),
        )
        if self._tips is not None:
            self._tips[bytes(device)] = (counter, bytes(envelope_hash))

    def certificates(self) -> dict[bytes, bytes]:
        return {r[0]: r[1] for r in self.db.execute("SELECT device, cert FROM certs")}

    def add_certificate(self, device: bytes, cert: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO certs (device, cert) VALUES (?, ?)", (device, cert))

    def outbox(self) -> list[tuple[int, bytes]]:
        return list(self.db.execute("SELECT counter, envelope FROM outbox ORDER BY counter"))

    def queue_envelope(self, counter: int, envelope: bytes) -> None:
        self.db.execute("INSERT INTO outbox (counter, envelope) VALUES (?, ?)", (counter, envelope))

    def drop_outbox(self, up_to_counter: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE counter <= ?", (up_to_counter,))

    def drop_outbox_from(self, counter: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE counter >= ?", (counter,))

    # -- files and their errors ------------------------------------------------------------------

    def files(self) -> dict[str, SyncedFile]:
        """The base: every path synced at least once, by its path in the share's tree."""
        if self._files is None:
            self._files = self._read_files()
            self._tree_of = {f.disk_path: p for p, f in self._files.items()}
        return dict(self._files)

    def _read_files(self, disk_path: str | None = None) -> dict[str, SyncedFile]:
        where = "node_id IS NOT NULL" + ("" if disk_path is None else " AND path = ?")
        rows = self.db.execute(
            "SELECT tree_path, path, node_id, kind, size, mtime_ns, inode, executable, version, "
            "version_id, indexed_at_ns, state, content_hash FROM files WHERE " + where,
            () if disk_path is None else (disk_path,),
        )
        states = _STATES
        return {
            (r[0] or r[1]): SyncedFile(
                r[0] or r[1],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                bool(r[7]),
                r[8],
                r[9],
                r[10],
                states[r[11]],
                r[12],
            )
            for r in rows
        }

    def tree_path_of(self, disk_path: str) -> str:
        """The tree path the row at ``disk_path`` was synced as (the same path if none)."""
        row = self.db.execute(
            "SELECT tree_path FROM files WHERE path = ?", (disk_path,)
        ).fetchone()
        return disk_path if row is None or row[0] is None else str(row[0])

    def has_files(self) -> bool:
        row = self.db.execute("SELECT 1 FROM files WHERE node_id IS NOT NULL LIMIT 1").fetchone()
        return row is not None

    def pending_local(self) -> bool:
        """Whether any path waits to be published."""
        row = self.db.execute(
            "SELECT 1 FROM files WHERE state IN (?, ?, ?) LIMIT 1",
            (SyncState.NEW.value, SyncState.MODIFIED.value, SyncState.DELETED.value),
        ).fetchone()
        return row is not None

    def unsynced(self) -> dict[str, SyncState]:
        """Local path → state, for every path not in sync."""
        rows = self.db.execute(
            "SELECT path, state FROM files WHERE state != ? ORDER BY path",
            (SyncState.SYNCED.value,),
        )
        return {r[0]: _STATES[r[1]] for r in rows}

    def put_file(self, f: SyncedFile) -> None:
        # One row per tree path as per local path: a stale row for the tree path goes.
        self.db.execute(
            "DELETE FROM files WHERE tree_path = ? AND path != ?", (f.path, f.disk_path)
        )
        # What the scanner hashed stays known while the disk still looks the same, and then the
        # earlier observation time counts (a racy file stays racy until it is read again).
        self.db.execute(
            "INSERT INTO files (path, kind, size, mtime_ns, inode, executable, content_hash, "
            "indexed_at_ns, state, symlink_target, node_id, version, chunks, tree_path, "
            "version_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET "
            "content_hash = CASE WHEN " + _SAME_STAT + " THEN coalesce(excluded.content_hash, "
            "files.content_hash) ELSE excluded.content_hash END, "
            "indexed_at_ns = CASE WHEN " + _SAME_STAT + " THEN min(files.indexed_at_ns, "
            "excluded.indexed_at_ns) ELSE excluded.indexed_at_ns END, "
            "kind = excluded.kind, size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "inode = excluded.inode, executable = excluded.executable, state = excluded.state, "
            "symlink_target = NULL, node_id = excluded.node_id, version = excluded.version, "
            "chunks = NULL, tree_path = excluded.tree_path, version_id = excluded.version_id",
            (
                f.disk_path,
                f.kind,
                f.size,
                f.mtime_ns,
                f.inode,
                int(f.executable),
                f.content_hash,
                f.synced_ns,
                f.state.value,
                f.entry,
                f.content,
                f.path,
                f.version,
            ),
        )
        if self._files is not None:
            # Replaced: the row at this disk path, and the one at this tree path.
            for key in (self._tree_of.pop(f.disk_path, None), f.path):
                replaced = self._files.pop(key, None) if key is not None else None
                if replaced is not None:
                    self._tree_of.pop(replaced.disk_path, None)
            # As stored (the upsert may have kept the scanner's hash): the one row, read back.
            self._files.update(self._read_files(f.disk_path))
            self._tree_of[f.disk_path] = f.path

    def forget_file(self, path: str) -> None:
        """Forget what was synced at tree path ``path``: the next scan sees what is there anew."""
        self.db.execute(
            "DELETE FROM files WHERE tree_path = ? OR (tree_path IS NULL AND path = ?)",
            (path, path),
        )
        if self._files is not None:
            forgotten = self._files.pop(path, None)
            if forgotten is not None:
                self._tree_of.pop(forgotten.disk_path, None)

    def count_files(self) -> tuple[int, int]:
        """How many synced files there are, and how many of them are deleted here."""
        row = self.db.execute(
            "SELECT count(*), count(CASE WHEN state = ? THEN 1 END) FROM files "
            "WHERE node_id IS NOT NULL AND kind = ?",
            (SyncState.DELETED.value, "file"),
        ).fetchone()
        return int(row[0]), int(row[1])

    def forget_unpublished_deletions(self) -> None:
        """Paths deleted before they were ever synced (a symlink, an unpublished file) go."""
        self.db.execute(
            "DELETE FROM file_errors WHERE path IN "
            "(SELECT path FROM files WHERE node_id IS NULL AND state = ?)",
            (SyncState.DELETED.value,),
        )
        self.db.execute(
            "DELETE FROM files WHERE node_id IS NULL AND state = ?", (SyncState.DELETED.value,)
        )
        self._error_paths = None

    def index_changed(self) -> None:
        """Someone else (the scanner's ``record_scan``) wrote the index: read it anew."""
        self._error_paths = None
        self._files = None

    def set_state(self, disk_path: str, state: SyncState) -> None:
        self.db.execute("UPDATE files SET state = ? WHERE path = ?", (state.value, disk_path))
        self._files = None

    def retarget(self, old: str, new: str) -> None:
        """The tree moved ``old`` (and what lies below it) to ``new``: re-key the tree paths."""
        self.db.execute(
            "UPDATE files SET tree_path = ? || substr(tree_path, ?) "
            "WHERE tree_path = ? OR (tree_path > ? AND tree_path < ?)",
            (new, len(old) + 1, old, old + "/", old + "0"),
        )
        self._files = None

    def file_errors(self) -> list[FileError]:
        rows = self.db.execute(
            "SELECT path, op, reason, since_ms, retry_at_ms FROM file_errors ORDER BY path"
        )
        return [FileError(*r) for r in rows]

    def set_file_error(self, error: FileError) -> None:
        if self._error_paths is not None:
            self._error_paths.add(error.path)
        # The first error per path keeps its "since": a retry failing again is the same problem.
        self.db.execute(
            "INSERT INTO file_errors (path, op, reason, since_ms, retry_at_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET op = excluded.op, "
            "reason = excluded.reason, retry_at_ms = excluded.retry_at_ms",
            (error.path, error.op, error.reason, error.since_ms, error.retry_at_ms),
        )

    def clear_file_errors(self, op: str) -> None:
        """Forget every error of one kind (those a full scan finds again if still true)."""
        self.db.execute("DELETE FROM file_errors WHERE op = ?", (op,))
        self._error_paths = None

    def clear_file_error(self, path: str) -> None:
        if self._error_paths is None:
            self._error_paths = {r[0] for r in self.db.execute("SELECT path FROM file_errors")}
        if path in self._error_paths:  # the usual case, no error, costs no statement
            self.db.execute("DELETE FROM file_errors WHERE path = ?", (path,))
            self._error_paths.discard(path)
