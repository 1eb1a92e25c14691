"""Notifications: a WebSocket per device, and HTTP long-poll with the same meaning.

WebSocket (``GET /v1/ws``, token in the Authorization header like every request): the device
sends ``{"type": "subscribe", "cursors": {share: seq}}`` (binary msgpack frames); the relay
answers ``{"type": "heads", "heads": {...}}`` at once, then ``{"type": "append", "share", "seq"}``
after appends, and every ``heartbeat_s`` a ``{"type": "heartbeat", "heads": {...}}`` carrying the
latest seq of each followed share, read from the database. A device catches up from its cursor
with the log endpoints, so a dropped notification or a reconnect loses nothing. Membership is
checked again at every heartbeat: a removed user or revoked device is told and disconnected.
A socket lives no longer than its token: before it expires the device sends
``{"type": "auth", "token": …}`` with a fresh token of the same device (answered
``{"type": "auth_ok", "expires_ms": …}``), else it gets an ``unauthenticated`` error and close
code 4401. Tokens never travel in the URL.

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
from relay.http.context import SERVICE, SETTINGS, SOCKETS, TOKEN, principal_of
from relay.http.wire import field_counters, read_map, respond
from relay.notify import Subscription
from relay.service import RelayService
from relay.tokens import Principal

MAX_FRAME_BYTES = 64 * 1024


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
def _append_frame(share: str, seq: int) -> bytes:
    """One encoding of an append notification, shared by every subscriber of the share."""
    return pack({"type": "append", "share": share, "seq": seq})


class _Session:
    """One WebSocket: the subscription it holds and the task that pushes to it."""

    __slots__ = ("expires_ms", "pusher", "service", "sock", "sub", "who")

    def __init__(
        self, service: RelayService, sock: web.WebSocketResponse, who: Principal, expires_ms: int
    ) -> None:
        self.service = service
        self.sock = sock
        self.who = who
        self.expires_ms = expires_ms
        self.sub: Subscription | None = None
        self.pusher: asyncio.Task[None] | None = None

    async def reauthenticate(self, token: object) -> None:
        if not isinstance(token, str):
            raise BadRequest("auth needs a token")
        service = self.service
        principal = await service.authenticate(token)
        if principal != self.who:
            raise Unauthenticated("a socket keeps the device it was opened by")
        self.expires_ms = service.tokens.expires_ms(token, service.clock.now_ms())
        await self.send({"type": "auth_ok", "expires_ms": self.expires_ms})

    def seconds_left(self) -> float:
        return (self.expires_ms - self.service.clock.now_ms()) / 1000

    async def send(self, message: dict[str, Any]) -> None:
        # No timeout per send: a socket that stops reading blocks only its own pusher (which
        # holds one pending seq per share, never a queue), and aiohttp's ping/pong heartbeat
        # closes it, which ends the send with an error.
        await self.sock.send_bytes(pack(message))

    async def subscribe(self, cursors: dict[str, int]) -> None:
        heads = await self.service.heads(self.who, list(cursors))
        self.stop_pushing()
        self.sub = self.service.subscribe(list(cursors))
        await self.send({"type": "heads", "heads": heads})
        self.pusher = asyncio.create_task(self.push(self.sub))

    async def push(self, sub: Subscription) -> None:
        service = self.service
        metrics = service.metrics
        heartbeat = service.settings.heartbeat_s
        try:
            while not sub.closed:
                if self.seconds_left() <= 0:
                    raise Unauthenticated("access token expired; send a fresh one with auth")
                woke = await sub.wait(max(0.0, min(heartbeat, self.seconds_left())))
                if woke:
                    for share, seq in woke.items():
                        await self.sock.send_bytes(_append_frame(share, seq))
                    metrics.notifications.inc(len(woke), "websocket")
                    continue
                if self.seconds_left() <= 0:
                    continue  # the check at the top of the loop says why
                # Quiet for a whole interval: check membership again and send the heads.
                heads = await service.heads(self.who, list(sub.shares))
                await service.authenticate_device(self.who)
                await self.send({"type": "heartbeat", "heads": heads})
        except RelayError as err:
            with contextlib.suppress(Exception):
                await self.send({"type": "error", **err.to_wire()})
            await self.sock.close(code=4000 + err.status, message=err.code.encode())
        except (TimeoutError, ConnectionError):
            await self.sock.close(code=1011, message=b"subscriber too slow")

    def stop_pushing(self) -> None:
        if self.pusher is not None:
            self.pusher.cancel()
            self.pusher = None
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
    request.app[SOCKETS].add(sock)
    session = _Session(service, sock, who, expires_ms)
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
        session.stop_pushing()
    return sock


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/ws", websocket)
    app.router.add_post("/v1/poll", poll)
