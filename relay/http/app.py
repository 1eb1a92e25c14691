"""``create_app(settings)``: the one aiohttp application, for ``drift relay serve`` and the tests.

The service is built in a ``cleanup_ctx`` (so its database, block store and notifier open when the
app starts and close when it stops) and stored under a typed :data:`SERVICE` key. Middlewares map
typed errors to answers, authenticate, and count requests by route template.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import WSCloseCode, web

from relay import accounts, linking
from relay.errors import BadRequest, RelayError, Unauthenticated
from relay.http import routes, ws
from relay.http.context import (
    METRICS,
    PRINCIPAL,
    SERVICE,
    SETTINGS,
    SOCKETS,
    THROTTLE,
    TOKEN,
)
from relay.http.throttle import LoginThrottle
from relay.http.wire import error_response
from relay.metrics import RelayMetrics
from relay.runtime import Seams, build_service, close_service
from relay.settings import Settings
from seams import Clock
from seams.tasks import end_tasks

logger = logging.getLogger("relay.http")

# Paths that take no token: health, metrics, the login exchange itself, and recovery by code.
PUBLIC = {
    "/healthz",
    "/livez",
    "/metrics",
    "/v1/auth/challenge",
    "/v1/auth/token",
    "/v1/auth/recover",
}
# Routes (method, template) the new device uses while linking, before it has a certificate:
# public, and throttled per client address like the login.
PUBLIC_LINK_ROUTES = {
    ("POST", "/v1/link/{rendezvous}/request"),
    ("GET", "/v1/link/{rendezvous}/grant"),
}
# Token-like query parameters: refused outright so a token never ends up in a URL or a log.
TOKEN_PARAMS = {"token", "access_token", "jwt", "auth", "authorization"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    route = request.match_info.route.resource
    template = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    try:
        response = await handler(request)
    except RelayError as err:
        metrics.errors.inc(1, err.code)
        response = error_response(err)
    except web.HTTPException as exc:  # redirects and aiohttp's own refusals pass through
        metrics.requests.inc(1, template, request.method, str(exc.status))
        metrics.request_seconds.observe(time.perf_counter() - started, template)
        raise
    except Exception:
        logger.exception("request failed", extra={"route": template, "method": request.method})
        response = error_response(RelayError("internal error"))
    elapsed = time.perf_counter() - started
    metrics.requests.inc(1, template, request.method, str(response.status))
    metrics.request_seconds.observe(elapsed, template)
    # The route template, never the path: paths name shares and blocks.
    logger.debug(
        "request",
        extra={
            "route": template,
            "method": request.method,
            "status": response.status,
            "ms": round(elapsed * 1000, 2),
        },
    )
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if TOKEN_PARAMS & {k.lower() for k in request.query}:
        raise BadRequest("access tokens are never accepted in a URL; use the Authorization header")
    if request.path in PUBLIC:
        if request.path.startswith("/v1/auth/"):
            request.app[THROTTLE].check(request)
        return await handler(request)
    resource = request.match_info.route.resource
    if resource is not None and (request.method, resource.canonical) in PUBLIC_LINK_ROUTES:
        request.app[THROTTLE].check(request)
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing access token (Authorization: Bearer …)")
    request[PRINCIPAL] = await request.app[SERVICE].authenticate(token.strip())
    request[TOKEN] = token.strip()
    return await handler(request)


async def _periodic(
    clock: Clock, every_s: float, job: Callable[[], Awaitable[object]], name: str
) -> None:
    while True:
        await clock.sleep(every_s)
        try:
            await job()
        except Exception:
            logger.warning("periodic job failed", extra={"error": name}, exc_info=True)


def create_app(settings: Settings, seams: Seams | None = None) -> web.Application:
    settings = settings.validate()
    app = web.Application(
        middlewares=[errors_and_metrics, authenticate],
        client_max_size=settings.max_request_bytes,
    )
    metrics = RelayMetrics()
    app[METRICS] = metrics
    app[SETTINGS] = settings
    app[SOCKETS] = weakref.WeakKeyDictionary()
    own_seams = seams is None

    async def service_ctx(app: web.Application) -> AsyncIterator[None]:
        used = seams or Seams.real()
        service = await build_service(settings, used, metrics)
        app[SERVICE] = service
        app[THROTTLE] = LoginThrottle(
            settings.logins_per_minute_per_client, used.clock, settings.behind_tls_proxy
        )
        metrics.subscribers.set_reader(lambda: service.notifier.hub.count)
        metrics.websockets.set_reader(lambda: len(app[SOCKETS]))

        async def refresh_owed() -> None:
            metrics.owed_blocks.set(await service.count_owed())

        async def prune() -> None:
            async with service.db.write() as tx:
                await accounts.prune(tx, service.clock.now_ms())
                await linking.prune(tx, service.clock.now_ms())

        tasks = [
            asyncio.create_task(_periodic(used.clock, 60.0, prune, "prune")),
            asyncio.create_task(
                _periodic(used.clock, settings.heartbeat_s / 2, service.refresh_heads, "heads")
            ),
            asyncio.create_task(_periodic(used.clock, 15.0, refresh_owed, "owed")),
        ]
        try:
            yield
        finally:
            await end_tasks(tasks, logger)
            await close_service(service)
            if own_seams:
                used.executor.shutdown()

    async def close_sockets(app: web.Application) -> None:
        # Graceful shutdown: tell subscribers to reconnect elsewhere (they resume by cursor).
        for sock in list(app[SOCKETS]):
            with contextlib.suppress(Exception):
                await sock.close(code=WSCloseCode.GOING_AWAY, message=b"relay shutting down")

    app.cleanup_ctx.append(service_ctx)
    app.on_shutdown.append(close_sockets)
    routes.add_routes(app)
    ws.add_routes(app)
    return app
