"""Restarts, a user's second device, the running daemon, guards and awkward renames."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from peer.engine.node import DeviceNode, Seams
from peer.engine.shares import InviteCode, invite_member, join_share
from peer.engine.state import ShareState
from peer.errors import RelayUnreachable
from peer.fs import OsFileSystem
from peer.remote.backoff import Backoff
from protocol.chain import Role
from seams import SystemClock
from seams.random import OsRandom
from tests.conftest import free_port
from tests.peer_sync.harness import (
    make_device,
    running_relay,
    second_device,
    settle,
    share_between,
    wait_for,
)


async def test_state_survives_restart_and_offline_edits_queue(tmp_path: Path) -> None:
    port = free_port()
    async with running_relay(tmp_path / "relay", port) as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        await share_between(a, b)
        (a.folder / "x.txt").write_bytes(b"1")
        await settle([a, b])
        await a.node.close()
        a.node = DeviceNode(a.home, watch=False)  # a restarts: tree, base and counter reload
        (a.folder / "x.txt").write_bytes(b"2")
        (a.folder / "y.txt").write_bytes(b"new")
        await settle([a, b])
        assert b.files() == {"x.txt": b"2", "y.txt": b"new"}
    # The relay is down: a's edit cannot leave, and nothing of it is lost.
    (a.folder / "offline.txt").write_bytes(b"written offline")
    a.node.link.backoff = Backoff(base_s=0.01, cap_s=0.02, attempts=2)  # type: ignore[attr-defined]
    with pytest.raises(RelayUnreachable):
        await a.sync()
    await a.node.close()
    a.node = DeviceNode(a.home, watch=False)
    async with running_relay(tmp_path / "relay", port):  # back, on the same data
        await settle([a, b])
        assert b.files()["offline.txt"] == b"written offline"
        await a.node.close()
        await b.node.close()


async def test_second_device_of_a_user(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a = make_device(tmp_path, "a", url)
        a2 = second_device(tmp_path, a, "a2", url)
        try:
            share = await share_between(a)
            code = await invite_member(
                a.home,
                a.node.config,
                a.node.device,
                a.node.link,
                share,
                a.user_key,
                Role.OWNER,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            await join_share(
                a2.home,
                a2.node.config,
                a2.node.device,
                a2.node.link,
                InviteCode.from_text(code),
                a2.folder,
            )
            (a.folder / "laptop.txt").write_bytes(b"from the laptop")
            await settle([a, a2])
            (a2.folder / "phone.txt").write_bytes(b"from the phone")
            await settle([a2, a])
            assert (
                a.files()
                == a2.files()
                == {
                    "laptop.txt": b"from the laptop",
                    "phone.txt": b"from the phone",
                }
            )
        finally:
            await a.node.close()
            await a2.node.close()


async def test_daemon_syncs_by_itself(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        await share_between(a, b)
        a.node = DeviceNode(a.home, watch=True)
        b.node = DeviceNode(b.home, watch=True)
        stop = asyncio.Event()
        runs = [asyncio.create_task(d.node.run(stop)) for d in (a, b)]
        try:
            await asyncio.sleep(0.3)
            (a.folder / "live.txt").write_bytes(b"seen quickly")
            await wait_for(lambda: b.files().get("live.txt") == b"seen quickly", 10)
            (b.folder / "reply.txt").write_bytes(b"and back")
            await wait_for(lambda: a.files().get("reply.txt") == b"and back", 10)
        finally:
            stop.set()
            await asyncio.gather(*runs)
            await a.node.close()
            await b.node.close()


async def test_mass_deletion_and_missing_folder_pause_the_share(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            a.folder.mkdir(exist_ok=True)
            for i in range(20):
                (a.folder / f"f{i}.txt").write_bytes(b"x" * i)
            await settle([a, b])
            for i in range(15):
                (a.folder / f"f{i}.txt").unlink()
            await settle([a, b])
            assert len(b.files()) == 20  # nothing propagated
            assert a.node.share(share).state is ShareState.PAUSED
            # `drift resume --accept-deletes`: this time the deletions were meant.
            a.node.share(share).store.set("accept_deletes", True)
            await settle([a, b])
            assert len(b.files()) == 5
            assert a.node.share(share).state is ShareState.IDLE
            # A vanished marker (unmounted folder) pauses too.
            shutil.rmtree(a.folder)
            a.folder.mkdir()
            await a.sync()
            assert "marker" in a.node.share(share).reason
            assert len(b.files()) == 5
        finally:
            await a.node.close()
            await b.node.close()


async def test_case_only_rename_and_deep_tree(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            await share_between(a, b)
            deep = a.folder.joinpath(*[f"d{i}" for i in range(30)])
            deep.mkdir(parents=True)
            (deep / "leaf.txt").write_bytes(b"deep")
            (a.folder / "readme.md").write_bytes(b"r")
            await settle([a, b])
            os.rename(a.folder / "readme.md", a.folder / "README.md")
            await settle([a, b])
            assert b.files() == a.files()
            assert "README.md" in b.files()
            assert "readme.md" not in b.files()
        finally:
            await a.node.close()
            await b.node.close()


async def test_symlinks_are_not_followed_and_say_why(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            outside = tmp_path / "outside-secret.txt"
            outside.write_bytes(b"never leaves this machine")
            (a.folder / "link").symlink_to(outside)
            (a.folder / "real.txt").write_bytes(b"real")
            await settle([a, b])
            assert b.files() == {"real.txt": b"real"}
            assert "symbolic links" in a.node.status(share).not_synced["link"]
            (a.folder / "link").unlink()
            await a.sync()
            assert "link" not in a.node.status(share).not_synced
        finally:
            await a.node.close()
            await b.node.close()


async def test_racy_change_in_the_same_mtime_tick_is_not_missed(tmp_path: Path) -> None:
    """On a coarse-mtime filesystem (FAT: 2 s) an edit right after a sync can leave size, mtime
    and inode unchanged; such a file is re-read, so the edit still goes out."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        await a.node.close()
        a.node = DeviceNode(
            a.home,
            seams=Seams(folder=lambda root: OsFileSystem(root, mtime_resolution_ns=10**10)),
            watch=False,
        )
        try:
            await share_between(a, b)
            path = a.folder / "same-size.txt"
            path.write_bytes(b"aaaa")
            await settle([a, b])
            before = path.stat()
            path.write_bytes(b"bbbb")
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same tick
            await settle([a, b])
            assert b.files()["same-size.txt"] == b"bbbb"
        finally:
            await a.node.close()
            await b.node.close()
