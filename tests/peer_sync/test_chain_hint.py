"""A pass asks the relay only for what moved: the chain when the log page says it did, the log
when the notification socket does (or the last read is too old).

The log page carries the chain's height; a device asks for the chain when that is above its own,
on its first pass and after a refusal, and not otherwise. End to end with a real relay on
loopback: the saved round trips must never cost a rotation (the remaining member adopts the new
epoch on its next pass, the removed one gets no key for it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import peer.engine.sync as sync_module
from peer.engine.shares import remove_member
from peer.remote.http import HttpRelayLink
from peer.remote.link import LogPage
from seams import SystemClock
from seams.random import OsRandom
from tests.peer_sync.harness import (
    Dev,
    make_device,
    running_relay,
    settle,
    share_between,
    wait_for,
)


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


async def test_a_quiet_log_is_not_read_while_the_socket_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the notification socket live and saying nothing is new, a pass skips the log read;
    an append elsewhere, a socket gone, or a read too long ago makes it read again."""
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            (a.folder / "one.txt").write_bytes(b"1")
            await settle([a, b])
            link = b.node.link
            assert isinstance(link, HttpRelayLink)
            sync = b.node.syncs[share]
            assert await link.wait_heads({share: sync.replica.cursor}, 0.5) == {}
            assert link.known_head(share) == (sync.replica.cursor, sync.replica.chain.height)

            reads: list[int] = []
            real = link.read_log

            async def counted(share: str, since: int, limit: int = 1000) -> LogPage:
                reads.append(since)
                return await real(share, since, limit)

            monkeypatch.setattr(link, "read_log", counted)
            (b.folder / "local.txt").write_bytes(b"a local change")
            await b.sync()
            assert reads == []  # the socket said the log holds nothing new: not read
            (a.folder / "two.txt").write_bytes(b"2")
            await a.sync()
            head = (await a.node.link.read_log(share, 0)).last_seq
            await wait_for(lambda: (link.known_head(share) or (0, 0))[0] >= head)
            await b.sync()
            assert b.files()["two.txt"] == b"2"
            assert reads == []  # the notification brought the entry itself: nothing to read

            # A notification without its entries (too big to push, or sent before this socket
            # subscribed): the pass must not skip the log it names.
            (a.folder / "three.txt").write_bytes(b"3")
            await a.sync()
            head = (await a.node.link.read_log(share, 0)).last_seq
            await wait_for(lambda: (link.known_head(share) or (0, 0))[0] >= head)
            link.notifications._pushed.clear()
            await b.sync()
            assert b.files()["three.txt"] == b"3"
            assert len(reads) >= 1

            reads.clear()
            monkeypatch.setattr(sync_module, "QUIET_READ_MAX_MS", 0)
            await b.sync()
            assert len(reads) == 1  # nothing new, but the last read is too old: read anyway

            monkeypatch.setattr(sync_module, "QUIET_READ_MAX_MS", 30_000)
            await link.notifications.close()
            reads.clear()
            await b.sync()
            assert len(reads) == 1  # no socket: nothing to go by
        finally:
            await a.node.close()
            await b.node.close()
