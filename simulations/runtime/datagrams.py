"""Unreliable datagrams (mDNS-style announcements): lost, duplicated and reordered by the seed.

Unlike streams, nothing holds a datagram back for another: each copy gets its own arrival time
(plus a random extra delay when reordered), and a datagram that meets a partition, a crashed host
or an unbound port is dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from simulations.runtime.errors import ConnectionClosed, NetworkError
from simulations.runtime.interfaces import Address

if TYPE_CHECKING:
    from simulations.runtime.network import Link, SimNetwork


class SimDatagramEndpoint:
    """A bound datagram port on one host; satisfies the ``DatagramEndpoint`` seam."""

    def __init__(self, net: SimNetwork, address: Address) -> None:
        self._net = net
        self._address = address
        self._inbox: deque[tuple[Address, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    @property
    def address(self) -> Address:
        return self._address

    def send_to(self, dst: Address, data: bytes) -> None:
        if self.closed:
            raise NetworkError(f"datagram endpoint {self._address} is closed")
        self._send(dst, bytes(data))

    def broadcast(self, port: int, data: bytes) -> None:
        if self.closed:
            raise NetworkError(f"datagram endpoint {self._address} is closed")
        lan = self._net.lan_of(self._address.host)
        if lan is None:
            self._net.trace.record(
                self._address.host, "dgram.broadcast", port=port, lan="-", recipients=0
            )
            return
        recipients = [
            endpoint.address
            for endpoint in self._net.datagram_endpoints_on(port, lan)
            if endpoint.address.host != self._address.host
        ]
        self._net.trace.record(
            self._address.host, "dgram.broadcast", port=port, lan=lan, recipients=len(recipients)
        )
        for dst in recipients:
            self._send(dst, bytes(data))

    async def recv(self) -> tuple[Address, bytes]:
        while True:
            if self.closed:
                raise ConnectionClosed(f"datagram endpoint {self._address} is closed")
            if self._inbox:
                return self._inbox.popleft()
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        endpoints = self._net.internal_host(self._address.host).datagram_endpoints
        if endpoints.get(self._address.port) is self:
            del endpoints[self._address.port]
        self._wake()

    def _send(self, dst: Address, data: bytes) -> None:
        net = self._net
        src = self._address.host
        if dst.host not in net.hosts:
            net.trace.record(src, "dgram.drop", dst=dst, reason="no-such-host")
            return
        link = net.link(src, dst.host)
        link.counters.frames_sent += 1
        link.counters.bytes_sent += len(data)
        net.trace.record(src, "dgram.send", dst=dst, size=len(data))
        if not net.reachable(src, dst.host) or link.chance(net.faults.loss):
            link.counters.datagrams_dropped += 1
            net.trace.record(src, "dgram.drop", dst=dst, reason="lost")
            return
        copies = 1
        if link.chance(net.faults.dup):
            copies = 2
            link.counters.datagrams_duplicated += 1
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            at = link.arrival(loop.time(), len(data))
            if link.chance(net.faults.reorder):
                low, high = net.faults.reorder_ms
                at += link.rng.uniform(low, high) / 1000.0
            loop.call_at(at, _arrive, net, link, self._address, dst, data)

    def deliver(self, src: Address, data: bytes) -> None:
        self._inbox.append((src, data))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _arrive(net: SimNetwork, link: Link, src: Address, dst: Address, data: bytes) -> None:
    endpoint = net.datagram_endpoint(dst)
    if not net.reachable(src.host, dst.host) or endpoint is None or endpoint.closed:
        link.counters.datagrams_dropped += 1
        net.trace.record(dst.host, "dgram.drop", src=src, dst=dst, reason="undeliverable")
        return
    link.counters.frames_delivered += 1
    link.counters.bytes_delivered += len(data)
    net.trace.record(dst.host, "dgram.deliver", src=src, dst=dst, size=len(data))
    endpoint.deliver(src, data)
