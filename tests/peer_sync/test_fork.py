"""Two copies of one device (a cloned disk) write at the same counter: the relay answers
`409 fork`; the loser stops, drops what was refused, continues after the other copy's envelopes
and republishes its folder — nothing is lost."""

from __future__ import annotations

import shutil
from pathlib import Path

from peer.device.config import DeviceConfig
from peer.device.home import Home
from peer.engine.node import DeviceNode
from peer.engine.sync import PassReport
from protocol.envelope import Envelope
from tests.peer_sync.harness import Dev, make_device, running_relay, settle, share_between


async def test_fork_is_recovered_without_loss(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        (a.folder / "base.txt").write_bytes(b"base")
        await settle([a, b])
        await a.node.close()
        # The clone: a copy of a's home and folder (its key file gets a new install id).
        clone_home = tmp_path / "home-clone"
        shutil.copytree(a.home.root, clone_home)
        clone_folder = tmp_path / "folder-clone"
        shutil.copytree(a.folder, clone_folder)
        config = DeviceConfig.load(clone_home / "config.toml")
        config.shares[share].path = str(clone_folder)
        config.save(clone_home / "config.toml")
        a.node = DeviceNode(a.home, watch=False)
        clone = Dev(
            "clone", Home(clone_home), clone_folder, DeviceNode(Home(clone_home), watch=False)
        )
        try:
            # The clone seals its change at counter N before it hears of the original's.
            (clone.folder / "from-clone.txt").write_bytes(b"clone")
            sync = clone.node.share(share)
            await sync.pull()
            await sync.publish_changes(PassReport())
            (a.folder / "from-original.txt").write_bytes(b"original")
            await a.sync()  # takes counter N at the relay
            await sync.send_outbox()  # 409 fork: recovered, nothing sent
            assert not sync.store.outbox()
            assert "fork" in sync.reason
            await settle([clone, a, b])
            expected = {
                "base.txt": b"base",
                "from-clone.txt": b"clone",
                "from-original.txt": b"original",
            }
            assert b.files() == expected
            assert a.files() == expected
            assert clone.files() == expected
        finally:
            await a.node.close()
            await b.node.close()
            await clone.node.close()


def _restore(dev: Dev, backup_home: Path, backup_folder: Path) -> Dev:
    """``dev`` wiped and restored from a copy taken earlier (its key file comes back as a new
    file, so it writes under a new install id, as after any real restore)."""
    shutil.rmtree(dev.home.root)
    shutil.copytree(backup_home, dev.home.root)
    shutil.rmtree(dev.folder)
    shutil.copytree(backup_folder, dev.folder)
    home = Home(dev.home.root)
    return Dev(dev.name, home, dev.folder, DeviceNode(home, watch=False))


async def _lan_only_envelopes(dev: Dev, share: str, name: str, data: bytes) -> list[Envelope]:
    """``dev`` writes ``name`` and seals it with the relay away: the envelopes a LAN peer gets."""
    (dev.folder / name).write_bytes(data)
    sync = dev.node.share(share)
    await sync.publish_changes(PassReport())
    return [Envelope.decode(raw) for _, raw in sync.store.outbox()]


async def test_a_restored_device_reusing_a_counter_a_lan_peer_holds_is_a_fork(
    tmp_path: Path,
) -> None:
    # Seed 941: pc's envelopes reached tablet over the LAN only, then pc was restored from an
    # older backup and sealed other envelopes at the same counters, which the relay took.
    # tablet took the relay's copies for ones it had seen and never converged.
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        (b.folder / "base.txt").write_bytes(b"base")
        await settle([a, b])
        await b.node.close()
        shutil.copytree(b.home.root, tmp_path / "backup-home")
        shutil.copytree(b.folder, tmp_path / "backup-folder")
        b.node = DeviceNode(b.home, watch=False)
        lost = await _lan_only_envelopes(b, share, "lost.txt", b"written before the restore")
        a_sync = a.node.share(share)
        report, later = a_sync.replica.apply_lan(lost, a_sync.clock.now_ms())
        assert (report.applied, later) == (len(lost), [])
        await b.node.close()
        b = _restore(b, tmp_path / "backup-home", tmp_path / "backup-folder")
        try:
            (b.folder / "after.txt").write_bytes(b"written after the restore")
            await b.sync()  # the relay takes b's counters again, with other envelopes
            b_counter = b.node.share(share).replica.counter
            assert b_counter == lost[-1].header.counter
            await settle([a, b])
            expected = {"base.txt": b"base", "after.txt": b"written after the restore"}
            assert a.files() == expected
            assert b.files() == expected
            tip = a.node.share(share).replica.store.tips()[lost[0].header.device]
            assert tip[0] == b_counter
            assert tip[1] != lost[-1].envelope_hash
        finally:
            await a.node.close()
            await b.node.close()


async def test_changes_sealed_on_a_lost_fork_are_republished(tmp_path: Path) -> None:
    # a applied b's LAN-only envelope and sealed its own change on top of it; b was then
    # restored and the relay took another envelope at that counter. a's unsent envelope has
    # seen one the relay will never hold: it is dropped with the fork and a's disk republished.
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        (b.folder / "base.txt").write_bytes(b"base")
        await settle([a, b])
        await b.node.close()
        shutil.copytree(b.home.root, tmp_path / "backup-home")
        shutil.copytree(b.folder, tmp_path / "backup-folder")
        b.node = DeviceNode(b.home, watch=False)
        lost = await _lan_only_envelopes(b, share, "lost.txt", b"written before the restore")
        a_sync = a.node.share(share)
        a_sync.replica.apply_lan(lost, a_sync.clock.now_ms())
        sealed = await _lan_only_envelopes(a, share, "mine.txt", b"a's change")
        own = a_sync.replica.device.device_id
        assert sealed[0].header.seen[lost[0].header.device] == lost[-1].header.counter
        await b.node.close()
        b = _restore(b, tmp_path / "backup-home", tmp_path / "backup-folder")
        try:
            (b.folder / "after.txt").write_bytes(b"written after the restore")
            await b.sync()
            await settle([a, b])
            expected = {
                "base.txt": b"base",
                "after.txt": b"written after the restore",
                "mine.txt": b"a's change",
            }
            assert a.files() == expected
            assert b.files() == expected
            replica = a.node.share(share).replica
            assert not replica.store.outbox()
            # The envelope sealed on the lost line never left: another took its counter.
            for envelope in sealed:
                held = replica.envelopes.envelope(own, envelope.header.counter)
                assert held is not None
                assert held != envelope.encode()
        finally:
            await a.node.close()
            await b.node.close()
