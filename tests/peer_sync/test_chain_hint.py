"""A pass fetches the membership chain only when the relay's log page says it moved.

The log page carries the chain's height; a device asks for the chain when that is above its own,
on its first pass and after a refusal, and not otherwise. End to end with a real relay on
loopback: the saved round trips must never cost a rotation (the remaining member adopts the new
epoch on its next pass, the removed one gets no key for it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.engine.shares import remove_member
from peer.remote.http import HttpRelayLink
from seams import SystemClock
from seams.random import OsRandom
from tests.peer_sync.harness import Dev, make_device, running_relay, settle, share_between


def _count_chain_reads(dev: Dev, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Heights this device's link asks the chain from, as it asks."""
    link = dev.node.link
    assert isinstance(link, HttpRelayLink)
    asked: list[int] = []
    real = link.chain

    async def counted(share: str, from_height: int = 0) -> list[bytes]:
        asked.append(from_height)
        return await real(share, from_height)

    monkeypatch.setattr(link, "chain", counted)
    return asked


async def test_unchanged_chain_is_not_fetched_and_a_moved_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        owner = make_device(tmp_path, "owner", url)
        editor = make_device(tmp_path, "editor", url)
        gone = make_device(tmp_path, "gone", url)
        devices = [owner, editor, gone]
        try:
            share = await share_between(owner, editor, gone)
            (owner.folder / "a.txt").write_bytes(b"before")
            await settle(devices)
            sync = editor.node.syncs[share]
            height = sync.replica.chain.height
            page = await editor.node.link.read_log(share, 0)
            assert page.chain_height == height

            asked = _count_chain_reads(editor, monkeypatch)
            (owner.folder / "b.txt").write_bytes(b"more")
            await owner.sync()
            await editor.sync()
            await editor.sync()
            assert editor.files()["b.txt"] == b"more"
            assert asked == []  # the chain did not move: no pass asked for it

            await remove_member(
                owner.home,
                owner.node.device,
                owner.node.link,
                share,
                gone.user_key,
                clock=SystemClock(),
                rng=OsRandom(),
            )
            await editor.sync()
            assert asked == [height + 1]  # the page said it moved: fetched once, from our head
            assert sync.replica.chain.height > height
            assert sync.replica.crypto.ring.latest_epoch == 1  # the new epoch's key, adopted
            (editor.folder / "c.txt").write_bytes(b"after the rotation")
            await editor.sync()
            await owner.sync()
            assert owner.files()["c.txt"] == b"after the rotation"
            assert len(asked) == 1

            sync.keys.chain_stale = True  # as after a refusal: the next pass asks whatever
            await editor.sync()
            assert len(asked) == 2
        finally:
            for dev in devices:
                await dev.node.close()
