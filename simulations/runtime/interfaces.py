"""The Network seam, as the peer and the relay client should declare it.

A host's view of the network: listen, connect, and send datagrams. Connections carry *frames*
(one ``send`` is one ``recv`` on the other side), in order, until they break. Errors are the
builtin ones, so code under test never imports an implementation:

- ``connect``: ``ConnectionRefusedError`` (nobody listens), ``TimeoutError`` (unreachable);
- ``send``/``recv``: ``ConnectionResetError`` (the connection broke), and ``recv`` raises
  ``EOFError`` once the other side closed cleanly and every frame it sent has been read.

``SimHost`` (simulated) satisfies these protocols; a real asyncio implementation does too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, order=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Connection(Protocol):
    @property
    def peer(self) -> Address: ...

    @property
    def local(self) -> Address: ...

    async def send(self, frame: bytes) -> None:
        """Queue one frame; waits while too much is in flight (backpressure)."""
        ...

    async def recv(self) -> bytes:
        """The next frame, in the order sent."""
        ...

    async def close(self) -> None:
        """Close cleanly: the other side reads every frame sent before, then ``EOFError``."""
        ...

    def abort(self) -> None:
        """Break the connection now: the other side sees ``ConnectionResetError``."""
        ...

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Frames until a clean close."""
        ...


ConnectionHandler = Callable[[Connection], Awaitable[None]]


class Listener(Protocol):
    @property
    def address(self) -> Address: ...

    async def close(self) -> None:
        """Stop accepting; connections already accepted go on."""
        ...


class DatagramEndpoint(Protocol):
    @property
    def address(self) -> Address: ...

    def send_to(self, dst: Address, data: bytes) -> None:
        """Best effort: may be lost, duplicated or reordered."""
        ...

    def broadcast(self, port: int, data: bytes) -> None:
        """To every endpoint bound on ``port`` on this host's LAN segment (mDNS-style)."""
        ...

    async def recv(self) -> tuple[Address, bytes]: ...

    def close(self) -> None: ...


class HostNetwork(Protocol):
    """What one device or the relay is handed: the network as seen from its own host."""

    @property
    def name(self) -> str: ...

    async def listen(self, port: int, handler: ConnectionHandler) -> Listener:
        """Run ``handler`` for each accepted connection (0: any free port, see ``address``)."""
        ...

    async def connect(self, host: str, port: int) -> Connection: ...

    async def bind_datagram(self, port: int) -> DatagramEndpoint: ...
