"""Faults injected into the real peer, relay and crdt code, for the checker-can-fail tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from crdt.rules import ProjectionRules
from crdt.tree import FolderTree
from peer.fs import MemFileSystem
from relay import log as relay_log


class NoFsyncBeforeRename(MemFileSystem):
    """A folder whose atomic write renames the temp file over the target without fsyncing it
    first: after a power loss the new name holds whatever had reached the disk (here nothing)."""

    @staticmethod
    def _fsync_file(node: Any) -> None:
        return None


def relay_drops_one_accepted_update(monkeypatch: pytest.MonkeyPatch, nth: int) -> list[int]:
    """The relay's log append answers as usual but, the ``nth`` time it appends anything,
    deletes the row it just wrote: an acknowledged envelope that is not durable. Returns the
    list the dropped sequence is put in."""
    real: Callable[..., Awaitable[relay_log.AppendResult]] = relay_log.append
    calls: list[int] = []
    dropped: list[int] = []

    async def append(tx: Any, share_id: str, items: Any, now_ms: int, **kw: Any) -> Any:
        result = await real(tx, share_id, items, now_ms, **kw)
        if result.appended:
            calls.append(1)
            if len(calls) == nth:
                await tx.execute(
                    "DELETE FROM envelopes WHERE share_id = ? AND seq = ?",
                    share_id,
                    result.last_seq,
                )
                dropped.append(result.last_seq)
        return result

    monkeypatch.setattr(relay_log, "append", append)
    return dropped


def crdt_rule_off(monkeypatch: pytest.MonkeyPatch, **switches: bool) -> None:
    """Every folder tree built from now on projects with the given rules switched off."""
    rules = ProjectionRules(**switches)
    defaults = dict(FolderTree.__init__.__kwdefaults__ or {})
    defaults["rules"] = rules
    monkeypatch.setattr(FolderTree.__init__, "__kwdefaults__", defaults)
