"""In-memory state databases for simulations, with the crash semantics of a disk.

Each path names a shared in-memory SQLite database of the ``memdb`` VFS
(``file:/NAME?vfs=memdb``): every connection to the name in this process sees the same database,
and it lives while one connection is open, so a keeper connection makes it outlive a daemon (a
restart reopens the same content).

Why memdb and not the alternatives: a plain ``:memory:`` connection dies with its handle, and
copying it out (``serialize``) at a crash would need the open transaction rolled back first,
which the daemon being crashed still owns; a shared-cache ``mode=memory&cache=shared`` database
shares one page cache, so a second connection reads the writer's uncommitted pages. With memdb
each connection has its own page cache and rollback journal (in memory), and the shared store
holds committed pages only, as a file would: a writer's changes reach it at COMMIT, never before
(``cache_spill=OFF`` keeps a large transaction from spilling pages early). So:

- a crash closes every connection handed out: SQLite rolls back what each had not committed, and
  the store keeps exactly the committed transactions; nothing is copied;
- the committed image, for a backup taken while the daemon may be inside a transaction, is read
  through a ``nolock=1`` connection (the writer's RESERVED lock would refuse a plain reader;
  without locks it reads the store, which holds committed pages only).

Names carry a per-instance prefix: the memdb namespace is the whole process, and a campaign runs
many simulations in one.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import urllib.parse
from pathlib import Path

_INSTANCES = itertools.count(1)


def _is_open(conn: sqlite3.Connection) -> bool:
    try:
        conn.total_changes  # noqa: B018  # raises once the connection is closed
    except sqlite3.ProgrammingError:
        return False
    return True


class MemoryStateDatabases:
    """One device's state databases, by path, in memory; crashable, restorable."""

    def __init__(self) -> None:
        self._prefix = f"/driftsync-{next(_INSTANCES)}"
        self._keepers: dict[Path, sqlite3.Connection] = {}
        self._handed_out: list[sqlite3.Connection] = []

    def _uri(self, path: Path, *, nolock: bool = False) -> str:
        name = urllib.parse.quote(f"{self._prefix}{path.as_posix()}")
        return f"file:{name}?vfs=memdb" + ("&nolock=1" if nolock else "")

    def _open(self, path: Path, *, nolock: bool = False) -> sqlite3.Connection:
        return sqlite3.connect(
            self._uri(path, nolock=nolock),
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )

    def connect(self, path: Path) -> sqlite3.Connection:
        if path not in self._keepers:
            self._keepers[path] = self._open(path)
        conn = self._open(path)
        conn.execute("PRAGMA cache_spill=OFF")  # the store holds committed pages only
        self._handed_out = [c for c in self._handed_out if _is_open(c)]
        self._handed_out.append(conn)
        return conn

    def paths(self) -> list[Path]:
        """Every database created so far, in a stable order."""
        return sorted(self._keepers)

    def power_cut(self) -> None:
        """A crash: every connection handed out dies; what it had not committed is gone.

        The daemon's code may still run its ``finally`` blocks afterwards; each statement then
        fails on the closed connection instead of committing more."""
        for conn in self._handed_out:
            conn.close()
        self._handed_out = []

    def committed(self) -> dict[Path, bytes]:
        """Each database as committed, also while a connection is inside a transaction (one
        never written is left out: opening it again gives the same empty database)."""
        images = {}
        for path in self.paths():
            with contextlib.closing(self._open(path, nolock=True)) as reader:
                (pages,) = reader.execute("PRAGMA page_count").fetchone()
                if pages:
                    images[path] = reader.serialize()
        return images

    def replace(self, images: dict[Path, bytes]) -> None:
        """Every database becomes what ``images`` holds (one missing there is gone): a restore
        onto a wiped device. Nothing may be connected but the keepers."""
        self.power_cut()
        self.close()
        for path, image in sorted(images.items()):
            keeper = self._keepers[path] = self._open(path)
            with contextlib.closing(sqlite3.connect(":memory:")) as source:
                source.deserialize(image)
                source.backup(keeper)

    def close(self) -> None:
        """Free every database (once no connection handed out is open either)."""
        for keeper in self._keepers.values():
            keeper.close()
        self._keepers = {}
