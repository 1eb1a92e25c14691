"""Notifications: a WebSocket per device, and HTTP long-poll with the same meaning.

WebSocket (``GET /v1/ws``, token in the Authorization header like every request): the device
sends ``{"type": "subscribe", "cursors": {share: seq}}`` (binary msgpack frames); the relay
answers ``{"type": "heads", "heads": {...}, "chains": {...}}`` at once, then
``{"type": "append", "share", "seq"}`` after appends (with the new log entries themselves when
they are few and small: see ``_append_frame``) and ``{"type": "chain", "share", "height"}``
after membership-chain extensions, and every ``heartbeat_s`` a ``{"type": "heartbeat", "heads",
"chains"}`` carrying the latest seq and chain height of each followed share, read from the
database. A device catches up from its cursor
with the log endpoints, so a dropped notification or a reconnect loses nothing. Membership is
checked again at every heartbeat: a removed user or revoked device is told and disconnected;
a revocation through this relay process rechecks that user's sockets at once.
A socket lives no longer than its token: before it expires the device sends
``{"type": "auth", "token": …}`` with a fresh token of the same device (answered
``{"type": "auth_ok", "expires_ms": …}``), else it gets an ``unauthenticated`` error and close
code 4401. Tokens never travel in the URL. The relay also pings every ``heartbeat_s`` and drops a
socket whose pong does not come within half of that: a device must keep reading its socket.

A subscriber never holds a queue: pending notifications coalesce to one seq per share, so a slow
or dead socket costs a few bytes and slows nobody; a send that cannot complete within the
heartbeat interval closes that socket alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

from aiohttp import WSMsgType, web

from protocol.codec import pack, unpack
from protocol.errors import DecodeError
from relay.errors import BadRequest, RelayError, Unauthenticated
from relay.http.context import (
    SERVICE,
    SETTINGS,
    SOCKETS,
    TOKEN,
    USER_SESSIONS,
    principal_of,
)
from relay.http.wire import field_counters, read_map, respond
from relay.notify import CHAIN_SUFFIX, Subscription
from relay.service import RelayService
from relay.tokens import Principal

MAX_FRAME_BYTES = 64 * 1024
PUSH_MAX_ENTRIES = 16
PUSH_MAX_BYTES = 32 * 1024
"""An append notification carries the new log entries themselves when there are at most this
many since the head the socket last told, this small in all: a device that was caught up applies
them without a log read (a round trip less for every change, and most of a relay's requests)."""


async def poll(request: web.Request) -> web.Response:
    body = await read_map(request, MAX_FRAME_BYTES)
    timeout = body.get("timeout_s", request.app[SETTINGS].longpoll_timeout_s)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
        raise BadRequest("timeout_s must be a non-negative number")
    cursors = field_counters(body, "cursors")
    if not cursors:
        raise BadRequest("poll at least one share")
    heads = await request.app[SERVICE].poll(principal_of(request), cursors, float(timeout))
    return respond({"heads": heads})


@functools.lru_cache(maxsize=4096)
def _frame(topic: str, value: int) -> bytes:
    """One encoding of a notification, shared by every subscriber of the share."""
    if topic.endswith(CHAIN_SUFFIX):
        return pack({"type": "chain", "share": topic.removesuffix(CHAIN_SUFFIX), "height": value})
    return pack({"type": "append", "share": topic, "seq": value})


class _Session:
    """One WebSocket and the subscription it holds.

    No task waits per socket: an offer from the hub or the heartbeat timer starts a short job
    that sends what is pending and ends, so an idle subscriber costs a timer handle and a few
    small objects (10,000 of them are held per relay process).
    """

    __slots__ = (
        "beat_due",
        "busy",
        "expires_ms",
        "service",
        "shares",
        "sock",
        "sub",
        "timer",
        "told",
        "who",
    )

    def __init__(
        self, service: RelayService, sock: web.WebSocketResponse, who: Principal, expires_ms: int
    ) -> None:
        self.service = service
        self.sock = sock
        self.who = who
        self.expires_ms = expires_ms
        self.sub: Subscription | None = None
        self.shares: list[str] = []
        self.timer: asyncio.TimerHandle | None = None
        self.busy: asyncio.Task[None] | None = None
        self.beat_due = False
        self.told: dict[str, int] = {}  # per share, the head this socket last told the device

    async def reauthenticate(self, token: object) -> None:
        if not isinstance(token, str):
            raise BadRequest("auth needs a token")
        service = self.service
        principal = await service.authenticate(token)
        if principal != self.who:
            raise Unauthenticated("a socket keeps the device it was opened by")
        self.expires_ms = service.tokens.expires_ms(token, service.clock.now_ms())
        await self.send({"type": "auth_ok", "expires_ms": self.expires_ms})
        self.arm()

    def seconds_left(self) -> float:
        return (self.expires_ms - self.service.clock.now_ms()) / 1000

    async def send(self, message: dict[str, Any]) -> None:
        # No timeout per send: a socket that stops reading stalls only its own job (and holds one
        # pending seq per share, never a queue); aiohttp's ping/pong heartbeat closes it.
        await self.sock.send_bytes(pack(message))

    async def subscribe(self, cursors: dict[str, int]) -> None:
        heads, chains = await self.service.follow(self.who, list(cursors))
        self.stop()
        self.shares = list(cursors)
        self.sub = self.service.subscribe(self.shares, chains=True)
        self.sub.listener = self.kick
        await self.send({"type": "heads", "heads": heads, "chains": chains})
        self.told = {share: heads.get(share, 0) for share in self.shares}
        self.arm()
        self.kick()  # anything offered while the heads were on their way

    def arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        wait = max(0.0, min(self.service.settings.heartbeat_s, self.seconds_left()))
        self.timer = asyncio.get_running_loop().call_later(wait, self.on_timer)

    def on_timer(self) -> None:
        self.timer = None
        self.beat_due = True
        self.kick()

    def kick(self) -> None:
        if self.busy is None and not self.sock.closed:
            self.busy = asyncio.get_running_loop().create_task(self.work())

    async def work(self) -> None:
        service = self.service
        try:
            while True:
                # The timer fires at the token's expiry too, subscribed or not.
                if self.seconds_left() <= 0:
                    raise Unauthenticated("access token expired; send a fresh one with auth")
                sub = self.sub
                if sub is not None and sub.pending:
                    woke = sub.take()
                    for topic, value in woke.items():
                        if topic.endswith(CHAIN_SUFFIX):
                            await self.sock.send_bytes(_frame(topic, value))
                        else:
                            await self.sock.send_bytes(await self._append_frame(topic, value))
                    service.metrics.notifications.inc(len(woke), "websocket")
                elif self.beat_due:
                    self.beat_due = False
                    if sub is not None:
                        # Check membership and the device again, and send the heads.
                        heads, chains = await service.follow(self.who, self.shares)
                        await service.authenticate_device(self.who)
                        await self.send({"type": "heartbeat", "heads": heads, "chains": chains})
                        self.told.update(heads)
                    self.arm()
                else:
                    return
        except RelayError as err:
            with contextlib.suppress(Exception):
                await self.send({"type": "error", **err.to_wire()})
            await self.sock.close(code=4000 + err.status, message=err.code.encode())
        except ConnectionError:
            await self.sock.close(code=1011, message=b"subscriber gone")
        finally:
            if self.busy is asyncio.current_task():  # a cancelled old job must not clear a new one
                self.busy = None

    async def _append_frame(self, share: str, seq: int) -> bytes:
        """The notification of ``seq``, with the entries after the head last told when they are
        few and small. They are read as the device would read them (``read_log``: its membership
        is checked again, so a removed member gets an error, never an entry written after)."""
        since = self.told.get(share)
        self.told[share] = max(seq, since or 0)
        if since is None or not 0 < seq - since <= PUSH_MAX_ENTRIES:
            return _frame(share, seq)
        page = await self.service.read_log(self.who, share, since, seq - since)
        if not page.entries or sum(len(e.body) for e in page.entries) > PUSH_MAX_BYTES:
            return _frame(share, seq)
        self.service.metrics.pushed_entries.inc(len(page.entries))
        return pack(
            {
                "type": "append",
                "share": share,
                "seq": seq,
                "since": since,
                "entries": [[e.seq, e.body, e.appended_ms] for e in page.entries],
                "last_seq": page.last_seq,
                "more": page.more,
                "chain_height": page.chain_height,
            }
        )

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.busy is not None:
            self.busy.cancel()
            self.busy = None
        if self.sub is not None:
            self.sub.close()
            self.sub = None


async def websocket(request: web.Request) -> web.WebSocketResponse:
    settings = request.app[SETTINGS]
    sock = web.WebSocketResponse(
        heartbeat=settings.heartbeat_s, max_msg_size=MAX_FRAME_BYTES, compress=False
    )
    who = principal_of(request)
    service = request.app[SERVICE]
    expires_ms = service.tokens.expires_ms(request[TOKEN], service.clock.now_ms())
    await sock.prepare(request)
    request.app[SOCKETS][sock] = None
    session = _Session(service, sock, who, expires_ms)
    session.arm()
    by_user = request.app[USER_SESSIONS]
    by_user.setdefault(who.user_id, {})[session] = None
    try:
        async for msg in sock:
            if sock.closed:
                break
            if msg.type != WSMsgType.BINARY:
                await session.send(
                    {
                        "type": "error",
                        "error": "bad_request",
                        "message": "send binary msgpack frames",
                    }
                )
                continue
            try:
                body = unpack(msg.data, max_bytes=MAX_FRAME_BYTES)
                kind = body.get("type") if isinstance(body, dict) else None
                if kind == "subscribe":
                    await session.subscribe(field_counters(body, "cursors"))
                elif kind == "auth":
                    await session.reauthenticate(body.get("token"))
                else:
                    raise BadRequest("expected a subscribe or auth message")
            except DecodeError as exc:
                await session.send(
                    {"type": "error", "error": "bad_request", "message": exc.message}
                )
            except RelayError as err:
                await session.send({"type": "error", **err.to_wire()})
    except ConnectionError:
        pass  # the device went away mid-answer; nothing to clean up beyond the subscription
    finally:
        session.stop()
        mine = by_user.get(who.user_id)
        if mine is not None:
            mine.pop(session, None)
            if not mine:
                del by_user[who.user_id]
    return sock


def recheck_user(app: web.Application, user_id: str) -> None:
    """Check this user's open sockets now rather than at their next heartbeat (one of the
    user's devices was just revoked: its sockets close within milliseconds on this process)."""
    for session in list(app[USER_SESSIONS].get(user_id, ())):
        assert isinstance(session, _Session)
        session.beat_due = True
        session.kick()


def add_routes(app: web.Application) -> None:
    app[USER_SESSIONS] = {}
    app.router.add_get("/v1/ws", websocket)
    app.router.add_post("/v1/poll", poll)
