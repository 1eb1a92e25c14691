"""The peer's state databases as a seam: SQLite files for real, named in-memory ones in simulations.

A device keeps one SQLite database per share (``peer.device.store``: the relay cursor, the
envelope counter, the CRDT updates, the local index). Whoever opens one asks a ``StateDatabases``
for the connection by the database's path; production gets :class:`FileStateDatabases`, a
simulation ``seams.memorydb.MemoryStateDatabases``, whose databases live in memory and whose
crash keeps exactly what was committed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol


class StateDatabases(Protocol):
    def connect(self, path: Path) -> sqlite3.Connection:
        """A connection to the database at ``path``, created empty if missing.

        In autocommit mode (``isolation_level=None``: the caller writes BEGIN and COMMIT), usable
        from any one thread at a time. Closing it with a transaction open rolls that back.
        """
        ...


class FileStateDatabases:
    """Production: a file per database; a commit is on the disk before it returns."""

    def connect(self, path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # The envelope counter is durable before an envelope leaves: a commit is fsynced.
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn


FILE_STATE_DATABASES = FileStateDatabases()
