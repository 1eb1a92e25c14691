"""Bringing back what was: one version of a file, or a file or folder as it was at a time.

"When" is the relay's append time of each update, which its log pages carry: one clock for every
device, so devices whose clocks disagree restore the same state "as of" a time, the one the relay
ordered. Only updates no relay has ordered yet (seen on the LAN, or not yet sent) count from this
device's own receipt time; never from the authors' clocks. Restoring writes through the
FileSystem seam's atomic write; restored into the synced folder, it is an ordinary local change
the next pass publishes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from crdt.view import ROOT_ENTRY, Entry, VisibleTree
from peer.engine.sync import ShareSync
from peer.engine.transfer import download_file
from peer.errors import DriftError, NotFound
from peer.fs import FsError, OsFileSystem


def _walk(view: VisibleTree) -> list[tuple[str, Entry]]:
    out: list[tuple[str, Entry]] = []
    stack = [("", ROOT_ENTRY)]
    while stack:
        prefix, eid = stack.pop()
        for child in view.children(eid):
            path = f"{prefix}/{child.name}" if prefix else child.name
            out.append((path, child))
            if child.is_dir:
                stack.append((path, child.id))
    return out


def select(
    sync: ShareSync, rel: str, *, version: int | None = None, at_ms: int | None = None
) -> list[tuple[str, Entry]]:
    """The entries to restore under ``rel`` ("" = the whole share), with the chosen versions."""
    tree = sync.tree
    if at_ms is not None:
        view = tree.as_of(sync.replica.vector_at(at_ms))
        chosen = [(p, e) for p, e in _walk(view) if not rel or p == rel or p.startswith(rel + "/")]
        if not chosen:
            raise NotFound(f"nothing was at {rel!r} at that time")
        return chosen
    entry = tree.lookup(rel)
    if entry is None:
        raise NotFound(f"{rel!r} is not in the share now", hint="give a time with --at")
    if version is None:
        return [(rel, entry)]
    versions = tree.history(entry.nodes[0]).versions
    if not 1 <= version <= len(versions):
        raise NotFound(f"no version {version}; see `drift history` (1..{len(versions)})")
    return [(rel, dataclasses.replace(entry, version=versions[version - 1].version))]


async def restore(sync: ShareSync, rel: str, items: list[tuple[str, Entry]], dest: Path) -> int:
    """Write ``items`` (paths under ``rel``) below ``dest``; how many files were written."""
    written = 0
    for path, entry in items:
        tail = path[len(rel) :].lstrip("/") if rel else path
        target = dest / tail if tail else dest
        if entry.is_dir:
            await sync.executor.run(target.mkdir, parents=True, exist_ok=True)
            continue
        if entry.version is None:
            continue
        await sync.executor.run(target.parent.mkdir, parents=True, exist_ok=True)
        try:
            await download_file(
                OsFileSystem(target.parent),
                target.name,
                entry.version.manifest,
                entry.version.size,
                entry.version.mtime_ms,
                sync.blocks,
                sync.replica.crypto,
                sync.executor,
                None,
            )
        except FsError as exc:
            raise DriftError(f"cannot write {target}: {exc}") from exc
        written += 1
    return written
