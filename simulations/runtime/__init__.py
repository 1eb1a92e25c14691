"""The deterministic simulation runtime: virtual time, a faulty in-memory network, fault points,
a hashed trace and seeds. Same seed, same run, event for event.

The real peer and relay run on it through their seams: ``SimClock`` for ``seams.Clock``,
``SimHost`` for the Network seam (``interfaces.HostNetwork``), ``SeededBuggify`` for fault points,
``seams.SeededRandom`` forks for randomness and ``seams.InlineExecutor`` for CPU work.
aiohttp servers and clients run on the simulated network through ``aiohttp_sim`` (imported on its
own, so the runtime does not pull in aiohttp).
"""

from seams import NO_BUGGIFY, Buggify, NoBuggify
from simulations.runtime.buggify import SeededBuggify, SiteReport
from simulations.runtime.clock import DEFAULT_EPOCH_MS, SimClock
from simulations.runtime.datagrams import SimDatagramEndpoint
from simulations.runtime.errors import (
    AddressInUse,
    BudgetExceeded,
    ConnectionClosed,
    ConnectionRefused,
    ConnectionReset,
    Deadlock,
    HostUnreachable,
    NetworkError,
    RealIoRefused,
    SimulationError,
    UnhandledErrors,
)
from simulations.runtime.faults import LinkKind, LinkProfile, NetFaults, swarm_faults
from simulations.runtime.interfaces import (
    Address,
    Connection,
    ConnectionHandler,
    DatagramEndpoint,
    HostNetwork,
    Listener,
)
from simulations.runtime.loop import VirtualTimeLoop, describe_pending, run
from simulations.runtime.network import LinkCounters, SimHost, SimListener, SimNetwork
from simulations.runtime.seed import (
    fresh_seed,
    parse_seed,
    replay_hint,
    run_seeds,
    seeds_to_run,
)
from simulations.runtime.simulation import Simulation, SwarmOptions, swarm
from simulations.runtime.streams import SimConnection
from simulations.runtime.trace import Trace
from simulations.runtime.transport import SimTransport, open_protocol, serve_protocol

__all__ = [
    "DEFAULT_EPOCH_MS",
    "NO_BUGGIFY",
    "Address",
    "AddressInUse",
    "BudgetExceeded",
    "Buggify",
    "Connection",
    "ConnectionClosed",
    "ConnectionHandler",
    "ConnectionRefused",
    "ConnectionReset",
    "DatagramEndpoint",
    "Deadlock",
    "HostNetwork",
    "HostUnreachable",
    "LinkCounters",
    "LinkKind",
    "LinkProfile",
    "Listener",
    "NetFaults",
    "NetworkError",
    "NoBuggify",
    "RealIoRefused",
    "SeededBuggify",
    "SimClock",
    "SimConnection",
    "SimDatagramEndpoint",
    "SimHost",
    "SimListener",
    "SimNetwork",
    "SimTransport",
    "Simulation",
    "SimulationError",
    "SiteReport",
    "SwarmOptions",
    "Trace",
    "UnhandledErrors",
    "VirtualTimeLoop",
    "describe_pending",
    "fresh_seed",
    "open_protocol",
    "parse_seed",
    "replay_hint",
    "run",
    "run_seeds",
    "seeds_to_run",
    "serve_protocol",
    "swarm",
    "swarm_faults",
]
