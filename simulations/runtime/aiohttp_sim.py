"""aiohttp on the simulated network: serve a real ``web.Application`` from a simulated host and
reach it with a real ``ClientSession`` from another.

    runner = web.AppRunner(app); await runner.setup()
    await SimSite(runner, sim.net.host("relay"), 443).start()
    async with aiohttp.ClientSession(connector=SimConnector(sim.net.host("laptop"))) as session:
        await session.get("http://relay:443/healthz")

The connector follows aiohttp's own ``UnixConnector``: only how a connection is opened changes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from simulations.runtime.network import SimHost, SimListener
from simulations.runtime.transport import open_protocol, serve_protocol

if TYPE_CHECKING:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.tracing import Trace as AiohttpTrace


class SimConnector(aiohttp.BaseConnector):
    """Opens every connection of a ``ClientSession`` from ``host`` over the simulated network."""

    def __init__(self, host: SimHost, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sim_host = host

    # The signature is aiohttp's (BaseConnector._create_connection), timeout parameter included.
    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[AiohttpTrace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> ResponseHandler:
        if req.host is None or req.port is None:
            raise aiohttp.InvalidURL(req.url)
        try:
            async with asyncio.timeout(timeout.sock_connect):
                _, protocol = await open_protocol(self._sim_host, req.host, req.port, self._factory)
        except OSError as exc:
            raise aiohttp.ClientConnectorError(req.connection_key, exc) from exc
        return protocol  # type: ignore[return-value]


class SimSite(web.BaseSite):
    """Serves an ``AppRunner`` on ``host:port`` of the simulated network."""

    def __init__(self, runner: web.BaseRunner, host: SimHost, port: int) -> None:
        super().__init__(runner)
        self._sim_host = host
        self._port = port
        self._listener: SimListener | None = None

    @property
    def name(self) -> str:
        return f"http://{self._sim_host.name}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")
        self._listener = await serve_protocol(self._sim_host, self._port, server)

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await super().stop()
