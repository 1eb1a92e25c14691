"""TCP-like connections on the simulated network: in order, no loss or duplicates, until broken.

A connection is a *path* between two hosts with one *pipe* per direction. A pipe delivers its
segments (data, FIN, RST) strictly in the order sent, never earlier than its predecessor, so a
retransmission delay holds back everything behind it. When the path is cut (partition, crashed
host) the pipes hold their segments; if the path is not restored within ``break_after_ms`` both
ends see a reset, and if it is, the held segments arrive after the heal.

Not modelled: the receiver's buffer (frames wait in the inbox however many there are) and
half-close (``close`` closes both directions; data that reaches a closed end is answered by RST).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from enum import Enum
from typing import TYPE_CHECKING

from simulations.runtime.errors import ConnectionClosed, ConnectionReset
from simulations.runtime.interfaces import Address

if TYPE_CHECKING:
    from simulations.runtime.network import Link, SimNetwork


class _Kind(Enum):
    DATA = "data"
    FIN = "fin"
    RST = "rst"


class _Segment:
    __slots__ = ("at", "kind", "payload")

    def __init__(self, at: float, kind: _Kind, payload: bytes) -> None:
        self.at = at
        self.kind = kind
        self.payload = payload


class _Pipe:
    """One direction of a path: segments in flight from ``sender`` to ``receiver``."""

    def __init__(self, link: Link, sender: SimConnection, receiver: SimConnection) -> None:
        self.link = link
        self.sender = sender
        self.receiver = receiver
        self.open = True
        self.in_flight_bytes = 0
        self._segments: deque[_Segment] = deque()
        self._last_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._space_waiters: list[asyncio.Future[None]] = []

    def push(self, kind: _Kind, payload: bytes = b"", extra_delay_s: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        at = max(self._last_at, self.link.arrival(loop.time(), len(payload)) + extra_delay_s)
        self._last_at = at
        self._segments.append(_Segment(at, kind, payload))
        self.in_flight_bytes += len(payload)
        self._arm()

    def has_space(self, nbytes: int, window: int) -> bool:
        return self.in_flight_bytes <= 0 or self.in_flight_bytes + nbytes <= window

    async def wait_for_space(self, nbytes: int, window: int) -> None:
        while not self.has_space(nbytes, window):
            waiter = asyncio.get_running_loop().create_future()
            self._space_waiters.append(waiter)
            await waiter
            self.sender.raise_if_failed()

    def pause(self) -> None:
        self.open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def resume(self) -> None:
        """Held segments are retransmitted now: each arrives one latency after the heal at the
        earliest, still in order."""
        self.open = True
        earliest = asyncio.get_running_loop().time() + self.link.latency_s
        previous = 0.0
        for segment in self._segments:
            segment.at = max(segment.at, earliest, previous)
            previous = segment.at
        self._last_at = max(self._last_at, previous)
        self._arm()

    def clear(self) -> None:
        self.pause()
        self._segments.clear()
        self.in_flight_bytes = 0
        self._wake_senders()

    def _arm(self) -> None:
        if self.open and self._segments and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(self._segments[0].at, self._pump)

    def _pump(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        while self.open and self._segments and self._segments[0].at <= now:
            segment = self._segments.popleft()
            self.in_flight_bytes -= len(segment.payload)
            self.receiver.on_segment(segment.kind, segment.payload, self.link)
        self._wake_senders()
        self._arm()

    def _wake_senders(self) -> None:
        waiters, self._space_waiters = self._space_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Path:
    """Both ends of one connection and the state they share: whether packets get through."""

    def __init__(self, net: SimNetwork, path_id: int, client_addr: Address, server_addr: Address):
        self.net = net
        self.path_id = path_id
        self.client = SimConnection(self, client_addr, server_addr)
        self.server = SimConnection(self, server_addr, client_addr)
        self.client.out = _Pipe(
            net.link(client_addr.host, server_addr.host), self.client, self.server
        )
        self.server.out = _Pipe(
            net.link(server_addr.host, client_addr.host), self.server, self.client
        )
        self.open = True
        self._break_timer: asyncio.TimerHandle | None = None

    @property
    def ends(self) -> tuple[SimConnection, SimConnection]:
        return (self.client, self.server)

    def set_open(self, reachable: bool) -> None:
        if reachable == self.open:
            return
        self.open = reachable
        loop = asyncio.get_running_loop()
        if not reachable:
            for end in self.ends:
                end.out.pause()
            self._break_timer = loop.call_later(
                self.net.faults.break_after_ms / 1000.0, self._break
            )
            self.net.trace.record(self.client.local.host, "tcp.cut", conn=self.path_id)
        else:
            if self._break_timer is not None:
                self._break_timer.cancel()
                self._break_timer = None
            for end in self.ends:
                end.out.resume()
            self.net.trace.record(self.client.local.host, "tcp.restored", conn=self.path_id)

    def _break(self) -> None:
        self._break_timer = None
        for end in self.ends:
            end.out.clear()
        for end in self.ends:
            end.fail_locally("timed out: no packets got through")

    def maybe_done(self) -> None:
        if all(end.finished for end in self.ends):
            for end in self.ends:
                end.out.clear()
            if self._break_timer is not None:
                self._break_timer.cancel()
                self._break_timer = None
            self.net.unregister(self)


class SimConnection:
    """One end of a simulated connection; satisfies the ``Connection`` seam."""

    out: _Pipe

    def __init__(self, path: Path, local: Address, peer: Address) -> None:
        self._path = path
        self._local = local
        self._peer = peer
        self._inbox: deque[bytes] = deque()
        self._eof = False
        self._closed = False
        self._reset_reason: str | None = None
        self._rst_sent = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def local(self) -> Address:
        return self._local

    @property
    def peer(self) -> Address:
        return self._peer

    @property
    def connection_id(self) -> int:
        return self._path.path_id

    @property
    def _other(self) -> SimConnection:
        return self._path.server if self is self._path.client else self._path.client

    @property
    def finished(self) -> bool:
        return self._reset_reason is not None or (self._closed and self._eof)

    @property
    def is_reset(self) -> bool:
        return self._reset_reason is not None

    def __repr__(self) -> str:
        state = "reset" if self.is_reset else "closed" if self._closed else "open"
        return f"<SimConnection {self.connection_id} {self._local}->{self._peer} {state}>"

    # -- the Connection seam -----------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        self.raise_if_failed()
        if self._closed:
            raise ConnectionReset(f"send on connection {self.connection_id} after close()")
        data = bytes(frame)
        net = self._path.net
        await self.out.wait_for_space(len(data), net.faults.window_bytes)
        if self._closed:
            raise ConnectionReset(f"send on connection {self.connection_id} after close()")
        self._transmit(data)

    def send_now(self, frame: bytes) -> bool:
        """``send`` if the window has room for ``frame`` now; False (nothing sent) if it must
        wait. What a socket transport does: write to the socket at once, queue only when full."""
        self.raise_if_failed()
        if self._closed:
            raise ConnectionReset(f"send on connection {self.connection_id} after close()")
        if not self.out.has_space(len(frame), self._path.net.faults.window_bytes):
            return False
        self._transmit(bytes(frame))
        return True

    def _transmit(self, data: bytes) -> None:
        net = self._path.net
        link = self.out.link
        link.counters.frames_sent += 1
        link.counters.bytes_sent += len(data)
        net.trace.record(self._local.host, "tcp.send", conn=self.connection_id, size=len(data))
        if link.chance(net.faults.reset):
            # A middlebox drops the connection: both ends get a RST, this frame never arrives.
            net.trace.record(self._local.host, "tcp.fault.reset", conn=self.connection_id)
            self._send_rst()
            self._other._send_rst()
            return
        extra_s = 0.0
        if link.chance(net.faults.stream_loss):
            low, high = net.faults.rto_ms
            extra_s = link.rng.uniform(low, high) / 1000.0
            net.trace.record(
                self._local.host,
                "tcp.fault.retransmit",
                conn=self.connection_id,
                delay_ms=extra_s * 1000,
            )
        self.out.push(_Kind.DATA, data, extra_s)

    async def recv(self) -> bytes:
        while True:
            if self._closed:
                raise ConnectionClosed(f"recv on connection {self.connection_id} after close()")
            if self._inbox:
                return self._inbox.popleft()
            if self._eof:
                raise ConnectionClosed(f"connection {self.connection_id} closed by {self._peer}")
            self.raise_if_failed()
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None

    async def close(self) -> None:
        if self._closed or self.is_reset:
            return
        self._closed = True
        self._path.net.trace.record(self._local.host, "tcp.close", conn=self.connection_id)
        self.out.push(_Kind.FIN)
        self._wake()
        self._path.maybe_done()

    def abort(self) -> None:
        if self.is_reset:
            return
        self._send_rst()
        self.fail_locally("aborted locally")

    async def _frames(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed:
                return

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    # -- driven by the network ---------------------------------------------------------------

    def raise_if_failed(self) -> None:
        if self._reset_reason is not None:
            raise ConnectionReset(f"connection {self.connection_id}: {self._reset_reason}")

    def fail_locally(self, reason: str) -> None:
        if self._reset_reason is not None:
            return
        self._reset_reason = reason
        self._path.net.trace.record(
            self._local.host, "tcp.reset", conn=self.connection_id, reason=reason
        )
        self._wake()
        self._path.maybe_done()

    def on_segment(self, kind: _Kind, payload: bytes, link: Link) -> None:
        if kind is _Kind.RST:
            self.fail_locally("reset by peer")
            return
        if kind is _Kind.FIN:
            if not self.is_reset:
                self._eof = True
                self._path.net.trace.record(self._local.host, "tcp.eof", conn=self.connection_id)
                self._wake()
                self._path.maybe_done()
            return
        if self.is_reset or self._closed:
            # Nobody is there to read it: answer with a reset, as a TCP stack would.
            if not self._rst_sent:
                self._send_rst()
            return
        link.counters.frames_delivered += 1
        link.counters.bytes_delivered += len(payload)
        self._path.net.trace.record(
            self._local.host, "tcp.deliver", conn=self.connection_id, size=len(payload)
        )
        self._inbox.append(payload)
        self._wake()

    def _send_rst(self) -> None:
        self._rst_sent = True
        self.out.push(_Kind.RST)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self.out._wake_senders()


def open_pair(
    net: SimNetwork, client: Address, server: Address
) -> tuple[SimConnection, SimConnection]:
    path = Path(net, net.next_connection_id(), client, server)
    net.register(path)
    return path.client, path.server
