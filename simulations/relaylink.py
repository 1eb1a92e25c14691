"""The peer's real HTTP relay client, dialling over the simulated network.

The one thing that differs from a device in production is the ``connector_factory``: the
session's connections open through a ``SimConnector`` from the device's simulated host. Every
request, retry, login, token refresh and WebSocket notification is the production code's.
"""

from __future__ import annotations

from peer.remote.http import HttpRelayLink
from protocol.keys import CertifiedDevice
from seams import Clock, RandomSource
from simulations.runtime.aiohttp_sim import SimConnector
from simulations.runtime.network import SimHost

CONNECTIONS_PER_LINK = 16  # what the production link's TCPConnector allows


def sim_relay_link(
    host: SimHost, url: str, device: CertifiedDevice, *, clock: Clock, rng: RandomSource
) -> HttpRelayLink:
    return HttpRelayLink(
        url,
        device,
        clock=clock,
        rng=rng,
        connector_factory=lambda: SimConnector(host, limit=CONNECTIONS_PER_LINK),
    )
