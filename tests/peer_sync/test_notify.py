"""Notifications: the WebSocket wakes a device; without it, long-poll does the same."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp

from crdt.identity import replica_for
from peer.remote.backoff import Backoff
from peer.remote.http import HttpRelayLink
from peer.remote.notify import Notifications
from seams import SystemClock
from seams.random import OsRandom
from tests.peer_sync.harness import make_device, running_relay, share_between, wait_for


class NoWebSocket(HttpRelayLink):
    """A link behind a proxy that refuses WebSocket upgrades."""

    async def ws_connect(self) -> tuple[aiohttp.ClientWebSocketResponse, int]:
        raise aiohttp.ClientConnectionError("upgrade refused by a proxy")


async def _wakes(link: HttpRelayLink, share: str, writer_sync: object) -> dict[str, int]:
    cursor = (await link.read_log(share, 0)).last_seq
    waiting = asyncio.create_task(link.wait_heads({share: cursor}, 20.0))
    await asyncio.sleep(0.5)
    await writer_sync()  # type: ignore[operator]
    return await asyncio.wait_for(waiting, 20)


async def test_websocket_and_long_poll_both_wake_a_device(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            link = b.node.link
            assert isinstance(link, HttpRelayLink)
            (a.folder / "one.txt").write_bytes(b"1")
            heads = await _wakes(link, share, a.sync)
            assert heads[share] >= 1
            assert link.notifications.connected

            fallback = NoWebSocket(url, b.node.device, clock=SystemClock(), rng=OsRandom())
            try:
                (a.folder / "two.txt").write_bytes(b"2")
                heads = await _wakes(fallback, share, a.sync)
                assert heads[share] >= 2
                assert not fallback.notifications.connected
            finally:
                await fallback.close()
        finally:
            await a.node.close()
            await b.node.close()


async def test_the_socket_renews_its_token_in_band_and_stays_open(tmp_path: Path) -> None:
    """Tokens of three seconds: the relay closes a socket whose token runs out, so one socket
    still open after two token lifetimes, still notifying, was renewed on the socket itself."""
    async with running_relay(tmp_path / "relay", token_ttl_s=3) as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            link = b.node.link
            assert isinstance(link, HttpRelayLink)
            cursor = (await link.read_log(share, 0)).last_seq
            assert await link.wait_heads({share: cursor}, 0.5) == {}
            assert link.notifications.connected
            await asyncio.sleep(6.5)
            assert link.notifications.connected
            assert link.notifications.connections == 1
            (a.folder / "late.txt").write_bytes(b"after two lifetimes")
            heads = await _wakes(link, share, a.sync)
            assert heads[share] > cursor
            assert link.notifications.connections == 1
        finally:
            await a.node.close()
            await b.node.close()


async def test_a_change_pushed_on_the_socket_is_applied_without_reading_the_log(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            link = b.node.link
            assert isinstance(link, HttpRelayLink)
            await b.sync()  # caught up: its cursor is the head the socket will push after
            (a.folder / "pushed.txt").write_bytes(b"came with the notification")
            await _wakes(link, share, a.sync)
            reads: list[int] = []
            read_log = link.read_log

            async def counted(share_id: str, since: int, limit: int = 1000) -> object:
                reads.append(since)
                return await read_log(share_id, since, limit)

            link.read_log = counted  # type: ignore[method-assign]
            await b.sync()
            assert (b.folder / "pushed.txt").read_bytes() == b"came with the notification"
            assert reads == []
        finally:
            await a.node.close()
            await b.node.close()


async def test_own_appends_take_their_relay_place_without_being_read_back(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        try:
            share = await share_between(a, b)
            await a.sync()
            (a.folder / "mine.txt").write_bytes(b"written here")
            await a.sync()
            replica = a.node.syncs[share].replica
            page = await a.node.link.read_log(share, 0)
            assert replica.cursor == page.last_seq  # past its own entry, in the same pass
            _, _, appended_ms = page.entries[-1]
            assert appended_ms is not None
            # Recorded at the relay's append time, as a log read would have: "as of" that time
            # holds the update, a millisecond before does not.
            own = replica_for(a.node.device.device_id, replica.identity.install_id)
            assert replica.vector_at(appended_ms).get(own, 0) > replica.vector_at(
                appended_ms - 1
            ).get(own, 0)
        finally:
            await a.node.close()
            await b.node.close()


class _Socket:
    """A notification socket that stays silent; cancelling its receive runs ``on_cancel``."""

    def __init__(self) -> None:
        self.on_cancel: Callable[[], None] | None = None

    async def send_bytes(self, data: bytes) -> None:
        pass

    async def receive(self) -> aiohttp.WSMessage:
        try:
            await asyncio.get_running_loop().create_future()  # nothing comes
        except asyncio.CancelledError:
            if self.on_cancel is not None:
                self.on_cancel()
            raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


class _Link:
    """What ``Notifications`` asks of the link, for tokens of a quarter of a second."""

    def __init__(self, sock: _Socket) -> None:
        self.clock = SystemClock()
        self.rng = OsRandom()
        self.backoff = Backoff()
        self.sock = sock

    def expiry(self) -> int:
        return self.clock.now_ms() + 250

    async def ws_connect(self) -> tuple[_Socket, int]:
        return self.sock, self.expiry()

    async def token_outliving(self, expires_ms: int) -> tuple[str, int]:
        return "token", self.expiry()


async def test_closing_ends_the_socket_task_whenever_the_close_comes() -> None:
    """``close`` cancels the socket task; a cancellation arriving while the task waits for a
    receive it gave up on (at a token renewal: every 1.5 s with three-second tokens) was
    swallowed, the task went on, and ``close`` waited for it for ever."""
    sock = _Socket()
    notes = Notifications(_Link(sock))  # type: ignore[arg-type]
    notes.shares = {"share"}
    task = asyncio.create_task(notes._run())
    notes._task = task
    await wait_for(lambda: notes.connected, 5)
    # The next renewal (in an eighth of a second) gives up on the receive: close then.

    def close_now() -> None:
        sock.on_cancel = None
        task.cancel()

    sock.on_cancel = close_now
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done, "the socket task swallowed its cancellation"
    assert task.cancelled()
