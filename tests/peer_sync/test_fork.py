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
