"""Helpers shared by the simulation runtime's tests."""

from __future__ import annotations

from seams import SeededRandom
from simulations.runtime import LinkProfile, NetFaults, SimNetwork, Trace

LAN_MS = 1.0
WAN_MS = 20.0


def fixed_faults(**overrides: object) -> NetFaults:
    """Exact latencies (LAN 1 ms, WAN 20 ms one way), no jitter, no faults unless overridden."""
    settings: dict[str, object] = {
        "lan": LinkProfile(latency_ms=(LAN_MS, LAN_MS)),
        "wan": LinkProfile(latency_ms=(WAN_MS, WAN_MS)),
        **overrides,
    }
    return NetFaults(**settings)  # type: ignore[arg-type]


def office_and_home(faults: NetFaults, seed: int = 1) -> SimNetwork:
    """a, b at home; c at the office; the relay on the WAN."""
    net = SimNetwork(SeededRandom(seed), faults, Trace())
    net.add_host("a", lan="home")
    net.add_host("b", lan="home")
    net.add_host("c", lan="office")
    net.add_host("relay")
    return net
