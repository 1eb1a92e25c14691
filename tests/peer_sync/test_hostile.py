"""Hostile remote input never writes outside the folder and never loses a local file."""

from __future__ import annotations

import os
from pathlib import Path

from crdt.ops import MoveOp, VersionOp, encode_op, op_id
from crdt.tree import FileContent, LocalUpdate
from peer.engine.sync import ShareSync
from peer.local.names import PORTABLE
from tests.peer_sync.harness import Dev, make_device, running_relay, settle, share_between


def _sync(dev: Dev) -> ShareSync:
    return dev.node.share(next(iter(dev.node.config.shares)))


async def _publish_raw(dev: Dev, name: str, content: bytes, size: int) -> None:
    """Write ops the honest API refuses (a bad name) straight into an envelope."""
    sync = _sync(dev)
    tree = sync.tree
    replica = tree.replica
    counter = tree.log.next_counter(replica)
    t = tree.index.max_t + 1
    now = sync.clock.now_ms()
    node = op_id(replica, counter)
    move = MoveOp(node, replica, counter, t, now, node, "root", name, (), False, ())
    version = VersionOp(
        op_id(replica, counter + 1), replica, counter + 1, t + 1, now, node, content, size, now, ()
    )
    update = tree.doc.insert([(move.id, encode_op(move)), (version.id, encode_op(version))])
    local = LocalUpdate(replica, tree.log.have(replica) + 1, update, tree.log.vector())
    sync.replica.seal(local, (), now)
    await sync.send_outbox()


async def test_bad_names_and_wrong_blocks_are_refused(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        good, evil = make_device(tmp_path, "good", url), make_device(tmp_path, "evil", url)
        try:
            await share_between(good, evil)
            (good.folder / "mine.txt").write_bytes(b"precious")
            await settle([good, evil])
            mine = _sync(evil).tree.lookup("mine.txt")
            assert mine is not None
            assert mine.version is not None
            for bad in ("../escape.txt", "/etc/escape", "nul\x00byte", "x" * 300, ".."):
                await _publish_raw(evil, bad, mine.version.manifest, 8)
                await good.sync()
            assert not (tmp_path / "escape.txt").exists()
            assert good.files() == {"mine.txt": b"precious"}
            assert sorted(p.name for p in good.folder.iterdir()) == [".drift", "mine.txt"]
        finally:
            await good.node.close()
            await evil.node.close()


async def test_manifest_pointing_at_wrong_blocks_writes_nothing(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        good, evil = make_device(tmp_path, "good", url), make_device(tmp_path, "evil", url)
        try:
            share = await share_between(good, evil)
            (good.folder / "real.txt").write_bytes(b"real content")
            await settle([good, evil])
            real = _sync(evil).tree.lookup("real.txt")
            assert real is not None
            assert real.version is not None
            lie = real.version.manifest[:32] + os.urandom(32)
            sync = _sync(evil)
            update = sync.tree.create_file(
                "forged.txt", FileContent(lie, 12, 0), now_ms=sync.clock.now_ms()
            )
            sync.replica.seal(update, (), sync.clock.now_ms())
            await sync.send_outbox()
            await good.sync()
            assert "forged.txt" not in good.files()
            assert not any("forged" in p.name for p in good.folder.iterdir())
            assert "forged.txt" in good.node.status(share).not_synced
        finally:
            await good.node.close()
            await evil.node.close()


async def test_names_invalid_here_are_kept_under_safe_names(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            names = ["CON", "a:b.txt", "trailing.", "x" * 250 + ".txt"]
            a.folder.mkdir(exist_ok=True)
            for name in names:
                (a.folder / name).write_bytes(name.encode())
            await a.sync()
            _sync(b).rules = PORTABLE  # b behaves like a Windows machine
            await settle([b])
            files = b.files()
            assert len(files) == len(names)
            assert sorted(files.values()) == sorted(n.encode() for n in names)
            assert "CON" not in files
            assert "a:b.txt" not in files
            # Nothing is lost and nothing comes back renamed on the other side.
            await settle([b, a])
            assert sorted(a.files()) == sorted(names)
        finally:
            await a.node.close()
            await b.node.close()
