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
- ``files``: what was last synced at each path (the base a local change is compared with);
- ``file_errors``: why a file is not synced, kept until it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.codec import pack, unpack

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
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, disk_path TEXT NOT NULL, entry TEXT NOT NULL, kind TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
    executable INTEGER NOT NULL, content BLOB, version TEXT, synced_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS file_errors (
    path TEXT PRIMARY KEY, op TEXT NOT NULL, reason TEXT NOT NULL,
    since_ms INTEGER NOT NULL, retry_at_ms INTEGER NOT NULL
);
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
    synced_ns: int = 0  # when it was recorded: a file whose mtime is not older is re-read


@dataclass(frozen=True, slots=True)
class FileError:
    path: str
    op: str
    reason: str
    since_ms: int
    retry_at_ms: int


class ShareStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # the counter is durable before we send
        self.db.executescript(SCHEMA)
        self._add_missing_columns()
        self._every = 500
        self._ticks = 0
        self._error_paths: set[str] | None = None  # paths with an error, once looked up
        # The files table as last read, kept in step by put_file/forget_file: a pass asks for
        # it several times, and only this connection writes it.
        self._files: dict[str, SyncedFile] | None = None

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

    def tips(self) -> dict[bytes, tuple[int, bytes]]:
        return {
            r[0]: (r[1], r[2]) for r in self.db.execute("SELECT device, counter, hash FROM tips")
        }

    def set_tip(self, device: bytes, counter: int, envelope_hash: bytes) -> None:
        self.db.execute(
            "INSERT INTO tips (device, counter, hash) VALUES (?, ?, ?) ON CONFLICT (device) "
            "DO UPDATE SET counter = excluded.counter, hash = excluded.hash",
            (device, counter, envelope_hash),
        )

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

    # -- files and their errors ------------------------------------------------------------------

    def files(self) -> dict[str, SyncedFile]:
        if self._files is None:
            self._files = self._read_files()
        return dict(self._files)

    def _read_files(self) -> dict[str, SyncedFile]:
        rows = self.db.execute(
            "SELECT path, disk_path, entry, kind, size, mtime_ns, inode, executable, content, "
            "version, synced_ns FROM files"
        )
        return {
            r[0]: SyncedFile(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10]
            )
            for r in rows
        }

    def put_file(self, f: SyncedFile) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files (path, disk_path, entry, kind, size, mtime_ns, inode, "
            "executable, content, version, synced_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                f.path,
                f.disk_path,
                f.entry,
                f.kind,
                f.size,
                f.mtime_ns,
                f.inode,
                int(f.executable),
                f.content,
                f.version,
                f.synced_ns,
            ),
        )
        if self._files is not None:
            self._files[f.path] = f

    def forget_file(self, path: str) -> None:
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))
        if self._files is not None:
            self._files.pop(path, None)

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
