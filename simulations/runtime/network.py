"""An in-memory network of named hosts: LAN segments, a WAN, partitions, crashes, counters.

``SimNetwork`` owns the topology and the faults; ``SimHost`` is one host's view of it (the
``HostNetwork`` seam handed to a device or the relay). Streams live in ``streams.py``, datagrams
in ``datagrams.py``. Every random draw comes from a ``SeededRandom`` fork named after the directed
link it concerns, so traffic on one link never shifts the draws of another.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, fields

from seams import SeededRandom
from simulations.runtime.datagrams import SimDatagramEndpoint
from simulations.runtime.errors import (
    AddressInUse,
    ConnectionRefused,
    HostUnreachable,
    NetworkError,
)
from simulations.runtime.faults import LinkKind, NetFaults
from simulations.runtime.interfaces import Address, ConnectionHandler
from simulations.runtime.loop import VirtualTimeLoop
from simulations.runtime.streams import Path, SimConnection, open_pair
from simulations.runtime.trace import GLOBAL_HOST, Trace

FIRST_EPHEMERAL_PORT = 49152


@dataclass
class LinkCounters:
    """Traffic on a link (or summed over links): frames are stream frames plus datagrams."""

    frames_sent: int = 0
    bytes_sent: int = 0
    frames_delivered: int = 0
    bytes_delivered: int = 0
    datagrams_dropped: int = 0
    datagrams_duplicated: int = 0

    def add(self, other: LinkCounters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Link:
    """One direction between two hosts: its latency, its bandwidth queue, its counters."""

    def __init__(
        self, src: str, dst: str, kind: LinkKind, faults: NetFaults, rng: SeededRandom
    ) -> None:
        self.src = src
        self.dst = dst
        self.kind = kind
        self.rng = rng
        self.faults = faults
        self.profile = faults.profile(kind)
        low, high = self.profile.latency_ms
        self.latency_s = rng.uniform(low, high) / 1000.0
        self.counters = LinkCounters()
        self._busy_until = 0.0

    def chance(self, p: float) -> bool:
        return p > 0.0 and self.rng.uniform(0.0, 1.0) < p

    def arrival(self, now: float, nbytes: int) -> float:
        """When ``nbytes`` handed to this link now arrive: queued behind earlier traffic at the
        link's bandwidth, then latency plus jitter."""
        bandwidth = self.profile.bandwidth_bytes_per_s
        sent = now
        if bandwidth is not None:
            sent = max(now, self._busy_until) + nbytes / bandwidth
            self._busy_until = sent
        jitter = self.rng.uniform(0.0, self.profile.jitter_ms) if self.profile.jitter_ms else 0.0
        return sent + self.latency_s + jitter / 1000.0


class _Host:
    def __init__(self, name: str, lan: str | None) -> None:
        self.name = name
        self.lan = lan
        self.up = True
        self.listeners: dict[int, SimListener] = {}
        self.datagram_endpoints: dict[int, SimDatagramEndpoint] = {}
        self.ports = itertools.count(FIRST_EPHEMERAL_PORT)
        self.tasks: set[asyncio.Task[None]] = set()


class SimNetwork:
    def __init__(
        self, rng: SeededRandom, faults: NetFaults | None = None, trace: Trace | None = None
    ) -> None:
        self.rng = rng
        self.faults = faults if faults is not None else NetFaults()
        self.trace = trace if trace is not None else Trace(keep=0)
        self._hosts: dict[str, _Host] = {}
        self._links: dict[tuple[str, str], Link] = {}
        self._group_of: dict[str, int] | None = None
        self._paths: dict[int, Path] = {}
        self._connection_ids = itertools.count(1)

    # -- topology ----------------------------------------------------------------------------

    def add_host(self, name: str, lan: str | None = None) -> SimHost:
        """A host, on LAN segment ``lan`` or (``None``) reachable only over the WAN."""
        if name in self._hosts:
            raise NetworkError(f"host {name!r} already exists")
        self._hosts[name] = _Host(name, lan)
        self.trace.record(name, "net.host", lan=lan or "-")
        return SimHost(self, name)

    def host(self, name: str) -> SimHost:
        self._host(name)
        return SimHost(self, name)

    @property
    def hosts(self) -> list[str]:
        return sorted(self._hosts)

    def lan_of(self, name: str) -> str | None:
        return self._host(name).lan

    def link_kind(self, src: str, dst: str) -> LinkKind:
        a, b = self._host(src), self._host(dst)
        if src == dst or (a.lan is not None and a.lan == b.lan):
            return LinkKind.LAN
        return LinkKind.WAN

    def link(self, src: str, dst: str) -> Link:
        key = (src, dst)
        link = self._links.get(key)
        if link is None:
            link = Link(
                src, dst, self.link_kind(src, dst), self.faults, self.rng.fork(f"link/{src}/{dst}")
            )
            self._links[key] = link
        return link

    def _host(self, name: str) -> _Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise NetworkError(f"no host named {name!r}") from None

    # -- partitions and crashes -------------------------------------------------------------

    def reachable(self, src: str, dst: str) -> bool:
        a, b = self._hosts.get(src), self._hosts.get(dst)
        if a is None or b is None or not (a.up and b.up):
            return False
        if src == dst or self._group_of is None:
            return True
        return self._group_of.get(src, -1) == self._group_of.get(dst, -1)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Only hosts in the same group reach each other; hosts named in no group form one more
        group together. Connections that now cross the cut break after ``break_after_ms`` unless
        healed first; new ones time out."""
        group_of: dict[str, int] = {}
        described = []
        for index, group in enumerate(groups):
            members = sorted(set(group))
            for name in members:
                self._host(name)
                if name in group_of:
                    raise NetworkError(f"host {name!r} is in two partition groups")
                group_of[name] = index
            described.append("{" + ",".join(members) + "}")
        self._group_of = group_of
        self.trace.record(GLOBAL_HOST, "net.partition", groups="|".join(described))
        self._recheck_connections()

    def isolate(self, *names: str) -> None:
        """Cut each named host off from every other host (e.g. ``isolate("relay")``)."""
        self.partition([{name} for name in names])

    def lan_only(self) -> None:
        """Each LAN segment becomes an island; WAN-only hosts (the relay) are unreachable."""
        segments: dict[str, set[str]] = {}
        for host in self._hosts.values():
            if host.lan is not None:
                segments.setdefault(host.lan, set()).add(host.name)
        self.partition([segments[lan] for lan in sorted(segments)])

    def heal(self) -> None:
        self._group_of = None
        self.trace.record(GLOBAL_HOST, "net.heal")
        self._recheck_connections()

    def crash(self, name: str) -> None:
        """The host loses power: its listeners, endpoints and connections vanish at once, its
        handler tasks are cancelled, and the other ends of its connections time out."""
        host = self._host(name)
        if not host.up:
            return
        host.up = False
        self.trace.record(name, "net.crash")
        for path in self._live_paths():
            for end in path.ends:
                if end.local.host == name:
                    end.fail_locally("host crashed")
        host.listeners.clear()
        for endpoint in list(host.datagram_endpoints.values()):
            endpoint.close()
        loop = asyncio.get_running_loop()
        tasks = loop.ordered(host.tasks) if isinstance(loop, VirtualTimeLoop) else host.tasks
        for task in tasks:
            task.cancel()
        self._recheck_connections()

    def restart(self, name: str) -> None:
        host = self._host(name)
        host.up = True
        self.trace.record(name, "net.restart")
        self._recheck_connections()

    def is_up(self, name: str) -> bool:
        return self._host(name).up

    def _live_paths(self) -> list[Path]:
        return [self._paths[pid] for pid in sorted(self._paths)]

    def _recheck_connections(self) -> None:
        for path in self._live_paths():
            path.set_open(self.reachable(path.client.local.host, path.server.local.host))

    # -- counters ----------------------------------------------------------------------------

    def counters_by_link(self) -> dict[tuple[str, str], LinkCounters]:
        return {key: self._links[key].counters for key in sorted(self._links)}

    def counters_touching(self, host: str) -> LinkCounters:
        """Traffic to and from ``host`` (e.g. everything that went through the relay)."""
        total = LinkCounters()
        for (src, dst), link in sorted(self._links.items()):
            if host in (src, dst) and src != dst:
                total.add(link.counters)
        return total

    def counters_by_kind(self) -> dict[LinkKind, LinkCounters]:
        totals = {kind: LinkCounters() for kind in LinkKind}
        for link in self._links.values():
            totals[link.kind].add(link.counters)
        return totals

    # -- used by hosts, streams and datagrams ------------------------------------------------

    def register(self, path: Path) -> None:
        self._paths[path.path_id] = path

    def unregister(self, path: Path) -> None:
        self._paths.pop(path.path_id, None)

    @property
    def open_connections(self) -> int:
        return len(self._paths)

    def next_connection_id(self) -> int:
        return next(self._connection_ids)

    def internal_host(self, name: str) -> _Host:
        return self._host(name)

    def datagram_endpoints_on(self, port: int, lan: str) -> list[SimDatagramEndpoint]:
        return [
            host.datagram_endpoints[port]
            for name, host in sorted(self._hosts.items())
            if host.lan == lan and host.up and port in host.datagram_endpoints
        ]

    def datagram_endpoint(self, address: Address) -> SimDatagramEndpoint | None:
        host = self._hosts.get(address.host)
        return host.datagram_endpoints.get(address.port) if host is not None else None


def _report_handler_failure(task: asyncio.Task[None]) -> None:
    """A connection handler that lets an exception escape is a bug in the code under test:
    report it to the loop at once (deterministically), not whenever the task is collected."""
    if task.cancelled() or task.exception() is None:
        return
    task.get_loop().call_exception_handler(
        {
            "message": f"connection handler {task.get_name()} failed",
            "exception": task.exception(),
            "task": task,
        }
    )


class SimListener:
    def __init__(self, host: SimHost, port: int, handler: ConnectionHandler) -> None:
        self._host = host
        self._address = Address(host.name, port)
        self.handler = handler

    @property
    def address(self) -> Address:
        return self._address

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting now (connections already accepted go on)."""
        internal = self._host.net.internal_host(self._host.name)
        if internal.listeners.get(self._address.port) is self:
            del internal.listeners[self._address.port]
            self._host.net.trace.record(self._host.name, "tcp.unlisten", port=self._address.port)


class SimHost:
    """One host's view of the simulated network: satisfies the ``HostNetwork`` seam."""

    def __init__(self, net: SimNetwork, name: str) -> None:
        self.net = net
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def _require_up(self) -> _Host:
        host = self.net.internal_host(self._name)
        if not host.up:
            raise NetworkError(f"host {self._name!r} is down (crashed); restart it first")
        return host

    async def listen(self, port: int, handler: ConnectionHandler) -> SimListener:
        """Accept connections on ``port`` (0: a free ephemeral port, see ``listener.address``);
        each runs ``handler`` in its own task and is closed when the handler returns."""
        host = self._require_up()
        if port == 0:
            port = next(host.ports)
        if port in host.listeners:
            raise AddressInUse(f"{self._name}:{port} already has a listener")
        listener = SimListener(self, port, handler)
        host.listeners[port] = listener
        self.net.trace.record(self._name, "tcp.listen", port=port)
        return listener

    async def connect(self, host: str, port: int) -> SimConnection:
        """Three-way handshake over simulated links: refused after a round trip when nobody
        listens, ``HostUnreachable`` after ``connect_timeout_ms`` when packets cannot pass."""
        net = self.net
        src = self._require_up()
        dst = Address(host, port)
        local = Address(self._name, next(src.ports))
        timeout_s = net.faults.connect_timeout_ms / 1000.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        net.trace.record(self._name, "tcp.connect", src=local, dst=dst)
        if host not in net.hosts or not net.reachable(self._name, host):
            await asyncio.sleep(timeout_s)
            net.trace.record(self._name, "tcp.unreachable", dst=dst)
            raise HostUnreachable(f"connect to {dst} timed out: host unreachable")
        await asyncio.sleep(net.link(self._name, host).arrival(loop.time(), 0) - loop.time())
        if not net.reachable(self._name, host):
            await asyncio.sleep(max(0.0, started + timeout_s - loop.time()))
            net.trace.record(self._name, "tcp.unreachable", dst=dst)
            raise HostUnreachable(f"connect to {dst} timed out: host unreachable")
        listener = net.internal_host(host).listeners.get(port)
        back = net.link(host, self._name)
        if listener is None:
            await asyncio.sleep(back.arrival(loop.time(), 0) - loop.time())
            net.trace.record(self._name, "tcp.refused", dst=dst)
            raise ConnectionRefused(f"connection to {dst} refused: nobody listens there")
        client, server = open_pair(net, local, dst)
        net.trace.record(host, "tcp.accept", conn=server.connection_id, src=local, dst=dst)
        self._spawn_handler(host, listener, server)
        await asyncio.sleep(back.arrival(loop.time(), 0) - loop.time())
        client.raise_if_failed()
        return client

    def _spawn_handler(self, host: str, listener: SimListener, conn: SimConnection) -> None:
        internal = self.net.internal_host(host)

        async def serve() -> None:
            try:
                await listener.handler(conn)
            finally:
                await conn.close()

        task = asyncio.get_running_loop().create_task(
            serve(), name=f"{listener.address}<-{conn.peer}"
        )
        internal.tasks.add(task)
        task.add_done_callback(_report_handler_failure)
        task.add_done_callback(internal.tasks.discard)

    async def bind_datagram(self, port: int) -> SimDatagramEndpoint:
        host = self._require_up()
        if port == 0:
            port = next(host.ports)
        if port in host.datagram_endpoints:
            raise AddressInUse(f"{self._name}:{port} already has a datagram endpoint")
        endpoint = SimDatagramEndpoint(self.net, Address(self._name, port))
        host.datagram_endpoints[port] = endpoint
        return endpoint
