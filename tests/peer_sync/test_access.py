"""Roles: a viewer receives but cannot publish; a removed member gets nothing new."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.engine.shares import remove_member
from peer.errors import RelayRefused
from protocol.chain import Role
from seams import SystemClock
from seams.random import OsRandom
from tests.peer_sync.harness import make_device, running_relay, settle, share_between


async def test_viewer_receives_but_cannot_publish(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        owner, viewer = make_device(tmp_path, "o", url), make_device(tmp_path, "v", url)
        try:
            share = await share_between(owner, viewer, role=Role.VIEWER)
            (owner.folder / "report.txt").write_bytes(b"read me")
            await settle([owner, viewer])
            assert viewer.files() == {"report.txt": b"read me"}
            (viewer.folder / "mine.txt").write_bytes(b"viewer wrote this")
            await settle([viewer, owner])
            assert "mine.txt" not in owner.files()
            assert (viewer.folder / "mine.txt").read_bytes() == b"viewer wrote this"
            status = viewer.node.status(share)
            assert "viewer" in status.not_synced["mine.txt"]
        finally:
            await owner.node.close()
            await viewer.node.close()


async def test_removed_member_gets_nothing_new(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        owner, other = make_device(tmp_path, "o", url), make_device(tmp_path, "x", url)
        try:
            share = await share_between(owner, other)
            (owner.folder / "before.txt").write_bytes(b"shared while a member")
            await settle([owner, other])
            await remove_member(
                owner.home,
                owner.node.device,
                owner.node.link,
                share,
                other.user_key,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            (owner.folder / "after.txt").write_bytes(b"secret")
            await owner.sync()
            with pytest.raises(RelayRefused) as refused:
                await other.sync()
            assert refused.value.code == "not_member"
            assert "after.txt" not in other.files()
            assert other.files()["before.txt"] == b"shared while a member"
        finally:
            await owner.node.close()
            await other.node.close()
