"""Typed application keys and the request's principal, shared by the app and its handlers."""

from __future__ import annotations

import weakref

from aiohttp import web

from relay.errors import Unauthenticated
from relay.http.throttle import LoginThrottle
from relay.metrics import RelayMetrics
from relay.service import RelayService
from relay.settings import Settings
from relay.tokens import Principal

SERVICE = web.AppKey("service", RelayService)
METRICS = web.AppKey("metrics", RelayMetrics)
SETTINGS = web.AppKey("settings", Settings)
#: Open WebSockets, in the order they opened: a WeakSet would iterate by address, and the
#: closing frames sent at shutdown would come in an order no simulation seed replays.
SOCKETS = web.AppKey("sockets", weakref.WeakKeyDictionary[web.WebSocketResponse, None])
THROTTLE = web.AppKey("throttle", LoginThrottle)
#: Open notification sessions by user id, in the order they opened (see
#: :func:`relay.http.ws.recheck_user`).
USER_SESSIONS = web.AppKey("user_sessions", dict[str, dict[object, None]])
PRINCIPAL = web.RequestKey("principal", Principal)
#: The bearer token of the request, kept in memory only (WebSockets re-check its expiry).
TOKEN = web.RequestKey("token", str)


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise Unauthenticated("no access token")
    return principal
