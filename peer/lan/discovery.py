"""Finding devices on the local network with mDNS/DNS-SD (zeroconf) on ``_driftsync._tcp``.

A ``LanDiscovery`` announces this device (port, protocol version, one rotating token per share)
under an instance and host name drawn at random for each run, and browses for the others. It
yields ``PeerSeen`` (addresses, port, which of our shares the peer's tokens stand for) and
``PeerGone``; statically configured peers are reported once at start, as if discovered. It binds
only to the addresses it is given, never to every interface.

Tokens rotate every hour (``peer.lan.tokens``): a timer re-announces at each hour boundary, and
a browser matches with the hour of its own clock, one hour either side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar

from zeroconf import Error as ZeroconfError
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from peer.lan.announcement import decode_announcement, encode_announcement
from peer.lan.errors import DiscoveryError
from peer.lan.tokens import (
    DISCOVERY_KEY_BYTES,
    HOUR_MS,
    hour_of,
    match_shares,
    share_token,
)
from protocol.messages import PROTOCOL_VERSION
from seams import Clock, RandomSource

log = logging.getLogger(__name__)

SERVICE_TYPE = "_driftsync._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
MAX_TRACKED_PEERS = 256
EVENT_QUEUE_SIZE = 1024

S = TypeVar("S", bound=Hashable)


@dataclasses.dataclass(frozen=True)
class StaticPeer:
    """A peer address from configuration, for networks where multicast does not pass."""

    host: str
    port: int


@dataclasses.dataclass(frozen=True)
class PeerSeen(Generic[S]):
    """A device answers at ``addresses``:``port``; ``shares`` are ours that its tokens match.

    For a static peer ``shares`` is every share we have (it announced nothing) and
    ``protocol_version`` is ``None``; the connection's hello tells the rest.
    """

    instance: str
    addresses: tuple[str, ...]
    port: int
    shares: frozenset[S]
    protocol_version: int | None
    source: Literal["mdns", "static"]


@dataclasses.dataclass(frozen=True)
class PeerGone:
    instance: str


DiscoveryEvent = PeerSeen[Any] | PeerGone


def _ip_version(addresses: Sequence[str]) -> IPVersion:
    versions = {ipaddress.ip_address(a).version for a in addresses}
    if versions == {4}:
        return IPVersion.V4Only
    if versions == {6}:
        return IPVersion.V6Only
    return IPVersion.All


class LanDiscovery(Generic[S]):
    """Announce this device and browse for others; read events with ``next_event``."""

    def __init__(
        self,
        *,
        port: int,
        discovery_keys: Mapping[S, bytes],
        bind_addresses: Sequence[str],
        clock: Clock,
        random: RandomSource,
        static_peers: Sequence[StaticPeer] = (),
        protocol_version: int = PROTOCOL_VERSION,
    ) -> None:
        if not bind_addresses:
            raise DiscoveryError("discovery needs the addresses to announce and listen on")
        self._port = port
        self._keys: dict[S, bytes] = dict(discovery_keys)
        self._addresses = list(bind_addresses)
        self._clock = clock
        self._random = random
        self._static = list(static_peers)
        self._version = protocol_version
        # Random per run: nothing in the names links two runs, or this device to its ids.
        label = random.bytes(8).hex()
        self.instance_name = f"{label}.{SERVICE_TYPE}"
        self._padding_key = random.bytes(DISCOVERY_KEY_BYTES)
        self._server = f"ds-{label}.local."
        self._events: asyncio.Queue[DiscoveryEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._known: dict[str, PeerSeen[S]] = {}
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        for peer in self._static:
            self._emit(
                PeerSeen(
                    instance=f"static:{peer.host}:{peer.port}",
                    addresses=(peer.host,),
                    port=peer.port,
                    shares=frozenset(self._keys),
                    protocol_version=None,
                    source="static",
                )
            )
        try:
            self._azc = AsyncZeroconf(
                interfaces=self._addresses, ip_version=_ip_version(self._addresses)
            )
            # Browse first: registering waits for the probes that claim our name (~1 s).
            self._browser = AsyncServiceBrowser(
                self._azc.zeroconf, SERVICE_TYPE, handlers=[self._on_service_state_change]
            )
            self._info = self._service_info()
            await self._azc.async_register_service(self._info, allow_name_change=True)
        except (OSError, ValueError, ZeroconfError) as exc:
            await self.close()
            raise DiscoveryError(f"cannot start mDNS on {self._addresses}: {exc}") from exc
        # On the (unlikely) clash of two random names, zeroconf picked another one.
        self.instance_name = self._info.name
        self._rotation = asyncio.create_task(self._rotate_tokens(), name="lan-token-rotation")

    async def close(self) -> None:
        """Say goodbye on the network and stop every task; idempotent."""
        self._closing = True  # the browser may still call back while it is being cancelled
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        tasks = [t for t in (self._rotation, *self._resolving.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._rotation = None
        self._resolving.clear()
        if self._azc is not None:
            await self._azc.async_close()  # unregisters, so peers see us leave
            self._azc = None

    async def __aenter__(self) -> LanDiscovery[S]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def next_event(self) -> DiscoveryEvent:
        return await self._events.get()

    # -- what we announce ----------------------------------------------------------------------

    def _service_info(self) -> AsyncServiceInfo:
        hour = hour_of(self._clock.now_ms())
        # Padding is stable within the hour: were it redrawn on every re-announcement (a new
        # address, say), the tokens that stayed put would be the real ones.
        padding = (share_token(self._padding_key, hour * 256 + i) for i in itertools.count())
        properties = encode_announcement(
            self._version, (share_token(key, hour) for key in self._keys.values()), padding
        )
        return AsyncServiceInfo(
            SERVICE_TYPE,
            self.instance_name,
            port=self._port,
            properties=properties,
            server=self._server,
            parsed_addresses=self._addresses,
        )

    async def _reannounce(self) -> None:
        if self._azc is None:
            return
        self._info = self._service_info()
        await self._azc.async_update_service(self._info)

    async def _rotate_tokens(self) -> None:
        while True:
            now_ms = self._clock.now_ms()
            await self._clock.sleep((HOUR_MS - now_ms % HOUR_MS) / 1000 + 0.5)
            await self._reannounce()

    async def set_shares(self, discovery_keys: Mapping[S, bytes]) -> None:
        """Announce (and match) this set of shares from now on."""
        self._keys = dict(discovery_keys)
        await self._reannounce()

    async def set_addresses(self, bind_addresses: Sequence[str]) -> None:
        """Interfaces came or went: listen and announce on these addresses instead."""
        if not bind_addresses:
            raise DiscoveryError("discovery needs the addresses to announce and listen on")
        self._addresses = list(bind_addresses)
        if self._azc is not None:
            await self._azc.async_update_interfaces(
                interfaces=self._addresses, ip_version=_ip_version(self._addresses)
            )
            await self._reannounce()

    # -- what we see ---------------------------------------------------------------------------

    def _emit(self, event: DiscoveryEvent) -> None:
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("LAN discovery events are not being read; dropped %s", event)

    def _on_service_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if name == self.instance_name or self._closing:
            return
        if state_change is ServiceStateChange.Removed:
            task = self._resolving.pop(name, None)
            if task is not None:
                task.cancel()
            if self._known.pop(name, None) is not None:
                self._emit(PeerGone(name))
            return
        if name not in self._known and len(self._known) >= MAX_TRACKED_PEERS:
            log.warning("more than %d LAN peers announced; ignoring %s", MAX_TRACKED_PEERS, name)
            return
        previous = self._resolving.get(name)
        if previous is not None and not previous.done():
            previous.cancel()
        self._resolving[name] = asyncio.create_task(self._resolve(name), name="lan-resolve")

    async def _resolve(self, name: str) -> None:
        if self._azc is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            found = await info.async_request(self._azc.zeroconf, RESOLVE_TIMEOUT_MS)
        except Exception as exc:  # anyone may announce anything; one bad record stops nothing
            log.info("cannot resolve LAN peer %s: %s", name, exc)
            return
        finally:
            if self._resolving.get(name) is asyncio.current_task():
                del self._resolving[name]
        if not found or info.port is None:
            return
        addresses = tuple(info.parsed_addresses())
        if not addresses:
            return
        announcement = decode_announcement(info.properties)
        seen: PeerSeen[S] = PeerSeen(
            instance=name,
            addresses=addresses,
            port=info.port,
            shares=match_shares(announcement.tokens, self._keys, hour_of(self._clock.now_ms())),
            protocol_version=announcement.version,
            source="mdns",
        )
        if self._known.get(name) != seen:
            self._known[name] = seen
            self._emit(seen)

    @property
    def peers(self) -> dict[str, PeerSeen[S]]:
        """Every peer currently known from mDNS, by instance name."""
        return dict(self._known)
