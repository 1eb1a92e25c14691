"""Warm start: a restart loads the saved folder tree, never a wrong one, and loses nothing."""

from __future__ import annotations

from pathlib import Path

from crdt.tree import FolderTree
from peer.device.store import ShareStore
from peer.engine.node import DeviceNode
from peer.engine.replica import ShareReplica
from peer.engine.shares import state_path
from peer.engine.warm import snapshot_path
from seams.random import OsRandom
from tests.peer_sync.harness import Dev, make_device, running_relay, settle, share_between


def state_of(tree: FolderTree) -> tuple[object, ...]:
    """What a user and the sync engine see of a tree: every entry, versions, history, waits."""
    entries = [(path, entry) for path, entry in tree.walk()]
    return (
        entries,
        tree.log.vector(),
        sorted(tree.index.moves),
        sorted(tree.index.versions),
        sorted((p.identity.replica, p.seq) for p in tree.held),
    )


def reopen(dev: Dev, share: str) -> ShareReplica:
    return ShareReplica.open(ShareStore(state_path(dev.home, share)), dev.node.device, OsRandom())


def replayed(dev: Dev, share: str) -> ShareReplica:
    """The tree as a replay of every stored update builds it: the reference."""
    path = snapshot_path(state_path(dev.home, share))
    saved = path.read_bytes() if path.exists() else None
    path.unlink(missing_ok=True)
    try:
        replica = reopen(dev, share)
    finally:
        if saved is not None:
            path.write_bytes(saved)
    assert not replica.warm
    return replica


async def edit_a_lot(a: Dev, b: Dev, rounds: int) -> None:
    for i in range(rounds):
        folder = a.folder / f"d{i % 3}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(b"v1 %d" % i)
        (b.folder / f"from-b-{i}.txt").write_bytes(b"b %d" % i)
        await settle([a, b], rounds=1)
        (folder / f"f{i}.txt").write_bytes(b"v2 %d" % i)
        if i % 2:
            (folder / f"f{i}.txt").rename(a.folder / f"moved-{i}.txt")
        await settle([a, b], rounds=1)


async def test_a_restart_loads_the_saved_tree_and_it_equals_the_replayed_one(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        await edit_a_lot(a, b, 4)
        before = state_of(a.node.share(share).tree)
        await a.node.close()  # a clean shutdown saves the tree
        assert snapshot_path(state_path(a.home, share)).exists()

        warm = reopen(a, share)
        assert warm.warm
        assert state_of(warm.tree) == before == state_of(replayed(a, share).tree)
        warm.store.close()

        # The restarted device keeps syncing on the loaded tree: both sides converge.
        a.node = DeviceNode(a.home, watch=False)
        (a.folder / "after-restart.txt").write_bytes(b"new")
        await settle([a, b])
        assert a.node.share(share).replica.warm
        assert a.files() == b.files()
        assert b.files()["after-restart.txt"] == b"new"
        await a.node.close()
        await b.node.close()


async def test_updates_stored_after_the_save_are_applied_on_top_after_a_crash(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        await edit_a_lot(a, b, 2)
        await a.node.close()
        saved = snapshot_path(state_path(a.home, share)).read_bytes()

        a.node = DeviceNode(a.home, watch=False)
        await edit_a_lot(a, b, 2)  # stored, but fewer than a save-worthy batch
        assert snapshot_path(state_path(a.home, share)).read_bytes() == saved
        expected = state_of(a.node.share(share).tree)
        for sync in a.node.syncs.values():  # power loss: no shutdown save
            sync.store.close()

        warm = reopen(a, share)
        assert warm.warm
        assert state_of(warm.tree) == expected == state_of(replayed(a, share).tree)
        warm.store.close()
        await b.node.close()


async def test_a_damaged_foreign_or_stale_saved_tree_falls_back_to_the_replay(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        await edit_a_lot(a, b, 2)
        await a.node.close()
        await b.node.close()
        path = snapshot_path(state_path(a.home, share))
        good = path.read_bytes()
        reference = state_of(replayed(a, share).tree)

        def damaged(at: int) -> bytes:
            return good[:at] + bytes([good[at] ^ 0x40]) + good[at + 1 :]

        foreign = snapshot_path(state_path(b.home, share)).read_bytes()
        for bad in (b"", b"not a tree", good[: len(good) // 2], damaged(len(good) - 7), foreign):
            path.write_bytes(bad)
            replica = reopen(a, share)
            assert not replica.warm
            assert state_of(replica.tree) == reference
            replica.store.close()

        # The store dropped an update the saved tree holds (as after a fork): never used.
        path.write_bytes(good)
        store = ShareStore(state_path(a.home, share))
        first = store.update_keys()[-1]
        store.db.execute("DELETE FROM updates WHERE ord = ?", (first[0],))
        store.close()
        replica = reopen(a, share)
        assert not replica.warm
        assert replica.tree.log.vector() == replayed(a, share).tree.log.vector()
        replica.store.close()
