"""The peer's real HTTP relay client, dialling over the simulated network.

``HttpRelayLink`` builds its ``aiohttp.ClientSession`` itself with a ``TCPConnector`` and takes no
connector: the one thing changed here is that the session's connections open through a
``SimConnector`` from the device's simulated host. Every request, retry, login, token refresh and
WebSocket notification is the production code's.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from peer.remote.http import HttpRelayLink
from simulations.runtime.aiohttp_sim import SimConnector
from simulations.runtime.network import SimHost


class SimRelayLink(HttpRelayLink):
    def __init__(self, host: SimHost, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sim_host = host

    @property
    def session(self) -> aiohttp.ClientSession:
        # Mirrors HttpRelayLink.session with the connector swapped (see the module docstring).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, connector=SimConnector(self.sim_host, limit=16)
            )
        return self._session
