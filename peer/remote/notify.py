"""Notifications from the relay: a WebSocket kept open, long-poll when it cannot be.

The relay pushes ``(share, seq)`` after appends and sends every followed share's head at
subscription and with each heartbeat. An append notification may carry the new log entries
themselves (a few small ones, after the head the socket last told): they wait here as a log page
until a pass takes them (``pushed_page``) instead of reading the log. This keeps the latest
head per share; ``wait`` returns as soon as one is past the caller's cursor. The socket
reconnects with backoff and resubscribes with the shares it follows; a caller never misses
anything, because it catches up by cursor anyway.
When the socket cannot be opened, ``wait`` falls back to the relay's HTTP long-poll.

A socket lives no longer than the token it was opened with, unless renewed on the socket itself:
a minute before it expires (half way, for tokens shorter than two minutes) this sends
``{"type": "auth", "token": …}`` with a token that outlives it, and the relay answers
``auth_ok`` with the new expiry. A socket is never dropped just because a token ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from peer.errors import RelayError
from peer.remote.link import LogPage
from peer.remote.pages import parse_page
from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from seams.tasks import end_tasks

if TYPE_CHECKING:
    from peer.remote.http import HttpRelayLink

logger = logging.getLogger("peer.remote")

RENEW_MARGIN_MS = 60_000
PUSHED_MAX_ENTRIES = 256
"""Entries pushed and not yet taken, per share; a device that falls further behind reads the log."""


def renew_at_ms(opened_ms: int, expires_ms: int) -> int:
    """When to renew a socket's token: a minute before it expires, or half way for short ones."""
    return expires_ms - min(RENEW_MARGIN_MS, max(0, expires_ms - opened_ms) // 2)


class Notifications:
    def __init__(self, link: HttpRelayLink) -> None:
        self.link = link
        self.heads: dict[str, int] = {}
        self.chains: dict[str, int] = {}  # membership chain heights, as the socket sends them
        self.shares: set[str] = set()
        # Per share: log entries the socket pushed, as a page of everything after ``since``.
        self._pushed: dict[str, tuple[int, LogPage]] = {}
        # The shares the open socket has sent heads for since it was opened: only its word on
        # them may let a pass skip a log read (see ``known``).
        self._live: frozenset[str] = frozenset()
        self.changed = asyncio.Event()
        self.connected = False
        self.connections = 0  # sockets opened so far: one while renewals keep working
        self.ws_failures = 0
        self._task: asyncio.Task[None] | None = None
        self._resubscribe = asyncio.Event()

    async def wait(self, cursors: Mapping[str, int], timeout_s: float) -> dict[str, int]:
        if not cursors:
            await self.link.clock.sleep(timeout_s)
            return {}
        if not set(cursors) <= self.shares:
            self.shares |= set(cursors)
            self._resubscribe.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="drift-notifications")
        deadline = self.link.clock.monotonic() + timeout_s
        while True:
            newer = {s: h for s, h in self.heads.items() if s in cursors and h > cursors[s]}
            if newer:
                return newer
            remaining = deadline - self.link.clock.monotonic()
            if remaining <= 0:
                return {}
            if not self.connected and self.ws_failures >= 2:
                # The socket cannot be opened (a proxy, a firewall): long-poll instead.
                try:
                    heads = await self.link.poll(cursors, min(remaining, 25.0))
                except RelayError:
                    await self.link.clock.sleep(min(remaining, 1.0))
                    continue
                for share, seq in heads.items():
                    self.heads[share] = max(self.heads.get(share, 0), seq)
                continue
            # Woken by a new head, by the socket giving up (``_run``: then long-poll), or at
            # the deadline; nothing else can change the answer, so no periodic re-check.
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.changed.wait()

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                sock, expires_ms = await self.link.ws_connect()
            except (aiohttp.ClientError, TimeoutError, OSError, RelayError) as exc:
                self.ws_failures += 1
                if self.ws_failures == 2:
                    self.changed.set()  # a waiter switches to long-polling (see ``wait``)
                attempt += 1
                logger.info("notification socket unavailable: %s", exc)
                await self.link.clock.sleep(self.link.backoff.delay(attempt, self.link.rng))
                continue
            attempt = 0
            self.ws_failures = 0
            self.connections += 1
            self.connected = True
            try:
                await self._follow(sock, expires_ms)
            except (aiohttp.ClientError, TimeoutError, OSError, RelayError) as exc:
                logger.info("notification socket lost: %s", exc)
            finally:
                self.connected = False
                self._live = frozenset()
                self._pushed.clear()
                await sock.close()
            await self.link.clock.sleep(self.link.backoff.delay(1, self.link.rng))

    async def _follow(self, sock: aiohttp.ClientWebSocketResponse, expires_ms: int) -> None:
        """Read notifications until the socket ends; ``expires_ms``: its token's expiry."""
        self._resubscribe.clear()
        subscribed = set(self.shares)
        cursors = {s: self.heads.get(s, 0) for s in subscribed}
        await sock.send_bytes(pack({"type": "subscribe", "cursors": cursors}))
        clock = self.link.clock
        renew_ms = renew_at_ms(clock.now_ms(), expires_ms)
        # One waiter for a resubscription for the socket's life, not one per message.
        resub = asyncio.ensure_future(self._resubscribe.wait())
        try:
            await self._read_messages(sock, expires_ms, renew_ms, subscribed, resub)
        finally:
            await end_tasks([resub], None)

    async def _read_messages(
        self,
        sock: aiohttp.ClientWebSocketResponse,
        expires_ms: int,
        renew_ms: int,
        subscribed: set[str],
        resub: asyncio.Future[Any],
    ) -> None:
        clock = self.link.clock
        while True:
            if self._resubscribe.is_set():
                return  # reconnect with the larger set of shares
            if clock.now_ms() >= renew_ms:
                renew_ms = await self._renew(sock, expires_ms)
            receive = asyncio.ensure_future(sock.receive())
            try:
                done, _ = await asyncio.wait(
                    {receive, resub},
                    timeout=max(0.0, (renew_ms - clock.now_ms()) / 1000),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                await end_tasks([receive], None)  # its result, if any, is read below
            if not done:
                continue  # time to renew the token
            if receive not in done:
                return
            msg = receive.result()
            if msg.type != aiohttp.WSMsgType.BINARY:
                return
            try:
                body = unpack(msg.data, max_bytes=64 * 1024)
            except ProtocolError:
                continue
            if not isinstance(body, dict):
                continue
            kind = body.get("type")
            if kind in ("heads", "heartbeat") and isinstance(body.get("heads"), dict):
                chains = body.get("chains")
                if isinstance(chains, dict):
                    for share, height in chains.items():
                        self._note_chain(str(share), int(height))
                for share, seq in body["heads"].items():
                    self._note(str(share), int(seq))
                self._live = frozenset(str(share) for share in body["heads"]) & subscribed
            elif kind == "append":
                if "entries" in body:
                    self._keep_pushed(body)
                self._note(str(body.get("share")), int(body.get("seq", 0)))
            elif kind == "chain":
                self._note_chain(str(body.get("share")), int(body.get("height", 0)))
            elif kind == "auth_ok" and isinstance(body.get("expires_ms"), int):
                expires_ms = body["expires_ms"]
                renew_ms = renew_at_ms(clock.now_ms(), expires_ms)
            elif kind == "error":
                logger.warning("relay notification error: %s", body.get("message"))
                return

    async def _renew(self, sock: aiohttp.ClientWebSocketResponse, expires_ms: int) -> int:
        """Send a token outliving the socket's; when to try again should no ``auth_ok`` come."""
        token, new_expires_ms = await self.link.token_outliving(expires_ms)
        await sock.send_bytes(pack({"type": "auth", "token": token}))
        # Until the relay confirms, retry half way to the old expiry (never in a tight loop).
        now_ms = self.link.clock.now_ms()
        return max(now_ms + 1_000, renew_at_ms(now_ms, min(expires_ms, new_expires_ms)))

    def _note_chain(self, share: str, height: int) -> None:
        self.chains[share] = max(self.chains.get(share, 0), height)

    def known(self, share: str) -> tuple[int, int] | None:
        """(latest seq, chain height) of ``share`` as the open socket last said, or None when no
        socket is open or it has not yet sent both for this share.

        The relay sends both on subscribing and with every heartbeat (read from its database),
        and pushes appends and chain entries as they commit, so this lags the relay by a message
        in flight, or by a heartbeat when its pub/sub dropped one.
        """
        if not self.connected or share not in self._live or share not in self.chains:
            return None
        return self.heads.get(share, 0), self.chains[share]

    def _keep_pushed(self, body: dict[object, object]) -> None:
        """Keep a pushed page; one that does not follow on from what is kept replaces it."""
        share, since = str(body.get("share")), body.get("since")
        if not isinstance(since, int):
            return
        try:
            page = parse_page(body)
        except RelayError:
            return  # malformed: the log will be read as if nothing had come
        kept = self._pushed.get(share)
        if kept is not None and kept[1].entries and kept[1].entries[-1][0] == since:
            page = LogPage(
                kept[1].entries + page.entries, page.last_seq, page.more, page.chain_height
            )
            since = kept[0]
        if len(page.entries) > PUSHED_MAX_ENTRIES:
            self._pushed.pop(share, None)
        else:
            self._pushed[share] = (since, page)

    def pushed_page(self, share: str, since: int) -> LogPage | None:
        """Everything after ``since`` up to the last pushed entry, as a log read would answer,
        when the kept page covers it; else None (and what is kept stays for a later cursor)."""
        kept = self._pushed.get(share)
        if kept is None or kept[0] > since:
            return None
        del self._pushed[share]
        entries = tuple(e for e in kept[1].entries if e[0] > since)
        if not entries:
            return None
        page = kept[1]
        # The page is as the relay saw it when it pushed; a head heard of since (an append too
        # big to push) means there is more to read, or the pass would stop short of it.
        more = page.more or self.heads.get(share, 0) > entries[-1][0]
        return LogPage(
            entries, max(page.last_seq, self.heads.get(share, 0)), more, page.chain_height
        )

    def _note(self, share: str, seq: int) -> None:
        if seq > self.heads.get(share, 0):
            self.heads[share] = seq
            self.changed.set()

    async def close(self) -> None:
        if self._task is not None:
            await end_tasks([self._task], logger)
            self._task = None
