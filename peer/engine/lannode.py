"""The daemon's LAN: a listener, discovery, and a link to every admitted peer, for every share.

``DeviceLan`` starts with ``DeviceNode.run`` when the config has ``lan_enabled`` (the default).
It listens for TLS connections (``peer.lan.transport``), announces and browses with zeroconf
(``peer.lan.discovery``; static ``lan_peers`` too) and keeps one dialled link per discovered
device, redialled when it breaks while the device is still announced. Every link runs a
``LanSession`` judged by one ``LanAuthorizer`` built from the shares' membership chains; the
sessions ask the shares' ``ShareLan`` for envelopes and chunks, and hand up what peers send:
envelopes wait in the share's inbox and wake its sync task, an adopted chain is stored in the
replica and passed on to every other peer. ``LanSeams`` is what a simulation swaps: the streams
(its in-memory network instead of TLS over TCP), discovery (static peers only) and the status
file. Bytes both ways go through one ``LanBandwidth`` (the
device's upload and download limits, counters per peer for ``drift status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
from collections.abc import Iterable, Mapping

import ifaddr

from peer.device.config import DeviceConfig
from peer.device.home import Home
from peer.engine.lanstatus import (
    WRITE_EVERY_S,
    LanStatus,
    peer_row,
    remove_status,
    write_status,
)
from peer.engine.sync import ShareSync
from peer.lan import events as ev
from peer.lan.authorizer import LanAuthorizer
from peer.lan.bandwidth import BandwidthLimits, LanBandwidth
from peer.lan.discovery import LanDiscovery, PeerGone, PeerSeen, StaticPeer
from peer.lan.errors import DiscoveryError, LanError, LinkError
from peer.lan.link import LanLink, LinkTimings
from peer.lan.peers import LanPeers, PeerStatus
from peer.lan.session import LanSession
from peer.lan.streams import LanStreams
from peer.lan.tls import TlsIdentity
from peer.lan.transport import LanConnection, LanServer, LocalDevice, connect
from protocol.chain import MembershipChain, verify_chain
from protocol.envelope import Envelope
from protocol.keys import CertifiedDevice, DeviceCertificate
from protocol.vv import VersionVector
from seams import Clock, RandomSource

logger = logging.getLogger("peer.lan")

REDIAL_FIRST_S = 0.5
REDIAL_MAX_S = 10.0
BAN_S = 60.0
"""A peer that broke the protocol (a corrupt chunk, say) is refused this long."""


def local_addresses() -> list[str]:
    """Every IPv4 address of this machine but loopback and link-local ones."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not ip.is_IPv4:
                continue
            address = ipaddress.ip_address(str(ip.ip))
            if not (address.is_loopback or address.is_link_local):
                found.append(str(address))
    return sorted(set(found))


@dataclasses.dataclass(frozen=True)
class LanSeams:
    """How the device's LAN meets the world; the defaults are a real device's."""

    streams: LanStreams | None = None
    """Where connections are opened and accepted (``None``: TLS over the machine's TCP)."""
    discovery: bool = True
    """Announce and browse with zeroconf (off: only the configured ``lan_peers`` are dialled)."""
    status_file: bool = True
    """Keep the LAN status file for ``drift status`` (another process) up to date."""


def _chain_copy(chain: MembershipChain) -> MembershipChain:
    # The replica's chain grows in place; the authorizer must see each change as an adoption.
    return verify_chain(chain.entries, chain.share_id)


class DeviceLan:
    """This device's LAN peers, for every share it syncs."""

    link_timings = LinkTimings()
    """Heartbeats and the idle timeout of every link (tests shorten them to see a cut soon)."""

    def __init__(
        self,
        device: CertifiedDevice,
        config: DeviceConfig,
        syncs: Mapping[str, ShareSync],
        *,
        clock: Clock,
        rng: RandomSource,
        home: Home | None = None,
        seams: LanSeams = LanSeams(),
    ) -> None:
        self.device = device
        self.seams = seams
        self.home = home if seams.status_file else None
        self.config = config
        self.clock = clock
        self.rng = rng
        self._syncs = {sync.replica.share_id: sync for sync in syncs.values()}
        self.authorizer = LanAuthorizer(
            {share: _chain_copy(sync.replica.chain) for share, sync in self._syncs.items()}
        )
        self.bandwidth = LanBandwidth(
            clock,
            BandwidthLimits(
                up_bps=config.upload_limit_kib_s * 1024 or None,
                down_bps=config.download_limit_kib_s * 1024 or None,
            ),
        )
        self.peers = LanPeers(self.bandwidth)
        self.local = LocalDevice(
            tls=TlsIdentity.from_seed(device.identity.seed), certificate=device.certificate
        )
        self.addresses = list(config.lan_addresses) or local_addresses()
        self.server: LanServer | None = None
        self.discovery: LanDiscovery[bytes] | None = None
        # Insertion-ordered (a dict, not a set): ``close`` cancels tasks in the order they were
        # spawned, not in an order of memory addresses, so a simulated run replays the same.
        self._tasks: dict[asyncio.Task[None], None] = {}
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._seen: dict[str, PeerSeen[bytes]] = {}
        self.banned: dict[bytes, float] = {}  # device id → until (monotonic)

    @property
    def port(self) -> int:
        return self.server.port if self.server is not None else 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        for sync in self._syncs.values():
            sync.lan.peers = self.peers
            sync.blocks.defer_when_unreachable = True
            sync.blocks.keep_deferred = sync.lan.keep_deferred
        self.server = LanServer(
            device=self.local,
            authorize=self.authorize,
            handler=self._accepted,
            streams=self.seams.streams,
        )
        hosts = self.addresses or ["127.0.0.1"]
        try:
            await self.server.start(hosts, self.config.lan_port)
        except OSError:
            # Taken (a second device on this machine, say): peers find us by mDNS anyway.
            await self.server.start(hosts, 0)
        statics = [_static(p) for p in self.config.lan_peers]
        keys = {
            share: sync.replica.crypto.ring.share_keys.lan_discovery_key
            for share, sync in self._syncs.items()
        }
        if self.addresses and self.seams.discovery:
            self.discovery = LanDiscovery(
                port=self.port,
                discovery_keys=keys,
                bind_addresses=self.addresses,
                clock=self.clock,
                random=self.rng,
                static_peers=statics,
            )
            try:
                await self.discovery.start()
            except DiscoveryError as exc:
                logger.warning("LAN discovery is off: %s", exc)
                self.discovery = None
        if self.discovery is not None:
            self._spawn(self._watch_discovery(self.discovery))
        else:
            for static in statics:
                self._found(_static_seen(static, keys))
        logger.info("LAN: listening on %s port %d", ", ".join(hosts), self.port)
        if self.home is not None:
            self._spawn(self._report(self.home))

    async def close(self) -> None:
        for sync in self._syncs.values():
            sync.lan.peers = None
            sync.stop_probe()
        if self.discovery is not None:
            await self.discovery.close()
        tasks = [*self._tasks, *self._dialers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in self.peers.links():
            with contextlib.suppress(LanError, OSError):
                await link.close()
        if self.server is not None:
            await self.server.close()
        if self.home is not None:
            remove_status(self.home)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks[task] = None
        task.add_done_callback(self._forget_task)
        task.add_done_callback(_report_failure)

    # -- finding and dialling peers --------------------------------------------------------------

    async def _watch_discovery(self, discovery: LanDiscovery[bytes]) -> None:
        while True:
            event = await discovery.next_event()
            if isinstance(event, PeerGone):
                self._seen.pop(event.instance, None)
                dialer = self._dialers.pop(event.instance, None)
                if dialer is not None:
                    dialer.cancel()
            elif isinstance(event, PeerSeen):
                self._found(event)

    def _found(self, seen: PeerSeen[bytes]) -> None:
        if not seen.shares:
            return  # announces none of our shares: nothing to talk about
        if any(a in self.addresses for a in seen.addresses) and seen.port == self.port:
            return  # ourselves, configured as a static peer
        self._seen[seen.instance] = seen
        dialer = self._dialers.get(seen.instance)
        if dialer is None or dialer.done():
            self._dialers[seen.instance] = asyncio.create_task(self._keep_dialled(seen.instance))

    async def _keep_dialled(self, instance: str) -> None:
        """One link to the device behind ``instance``, redialled while it is announced."""
        delay_s = REDIAL_FIRST_S
        while (seen := self._seen.get(instance)) is not None:
            link = await self._dial(seen)
            if link is None:
                await self.clock.sleep(delay_s * self.rng.uniform(0.5, 1.0))
                delay_s = min(delay_s * 2, REDIAL_MAX_S)
                continue
            delay_s = REDIAL_FIRST_S
            await link.done.wait()
            await self.clock.sleep(REDIAL_FIRST_S * self.rng.uniform(0.5, 1.0))

    async def _dial(self, seen: PeerSeen[bytes]) -> LanLink | None:
        for address in seen.addresses:
            try:
                connection = await connect(
                    address,
                    seen.port,
                    device=self.local,
                    authorize=self.authorize,
                    streams=self.seams.streams,
                )
            except LinkError as exc:
                logger.debug("LAN: cannot reach %s:%d: %s", address, seen.port, exc)
                continue
            except LanError as exc:
                logger.info("LAN: %s:%d refused: %s", address, seen.port, exc)
                return None
            link = self._link(connection)
            self._spawn(link.run())
            return link
        return None

    def authorize(self, certificate: DeviceCertificate) -> bool:
        """A member's device the chains admit, unless it misbehaved lately."""
        until = self.banned.get(certificate.device_id)
        if until is not None and self.clock.monotonic() < until:
            return False
        return self.authorizer.admits_any(certificate)

    async def _accepted(self, connection: LanConnection) -> None:
        await self._link(connection).run()

    def _link(self, connection: LanConnection) -> LanLink:
        session = LanSession(
            peer=connection.peer.certificate,
            authorizer=self.authorizer,
            envelopes=self,
            chunks=self,
            verify_chunk=self.verify_chunk,
        )
        link = LanLink(
            connection,
            session,
            clock=self.clock,
            bandwidth=self.bandwidth,
            timings=self.link_timings,
            on_event=lambda event: self._on_event(event, connection.peer.device_id),
        )
        self.peers.add(link)
        logger.info(
            "LAN: connected to %s (%s)",
            connection.peer.certificate.name,
            connection.peer_address[0],
        )
        return link

    # -- what sessions ask (EnvelopeSource, ChunkSource) -----------------------------------------

    def vector(self, share: bytes) -> VersionVector:
        return self._syncs[share].lan.vector(share)

    def envelopes_after(self, share: bytes, vector: VersionVector) -> Iterable[Envelope]:
        return self._syncs[share].lan.envelopes_after(share, vector)

    def chunk(self, share: bytes, chunk_id: bytes) -> bytes | None:
        sync = self._syncs.get(share)
        return None if sync is None else sync.lan.chunk(share, chunk_id)

    def verify_chunk(self, share: bytes, chunk_id: bytes, data: bytes) -> bool:
        sync = self._syncs.get(share)
        return sync is not None and sync.lan.verify(share, chunk_id, data)

    # -- what sessions report --------------------------------------------------------------------

    async def _on_event(self, event: ev.Event, peer: bytes) -> None:
        if isinstance(event, ev.EnvelopesReceived):
            sync = self._syncs.get(event.share)
            if sync is not None:
                sync.lan.received(event.envelopes)
        elif isinstance(event, ev.ChainAdopted):
            sync = self._syncs.get(event.share)
            if sync is not None:
                start = sync.replica.chain.height + 1
                sync.replica.update_chain([e.encode() for e in event.chain.entries[start:]])
                sync.lan.wake()
            await self.peers.chains_changed()
        elif isinstance(event, ev.ChainForked):
            logger.warning(
                "LAN: a peer's membership chain of share %s forks at height %d; ignored",
                event.share.hex(),
                event.height,
            )
        elif isinstance(event, ev.PeerMisbehaved):
            # Its chunks come from elsewhere (the fetch asks the next peer, then the relay).
            logger.warning(
                "LAN: peer %s dropped for %.0f s: %s", peer.hex()[:16], BAN_S, event.reason
            )
            self.banned[peer] = self.clock.monotonic() + BAN_S
        elif isinstance(event, ev.AdmissionEnded):
            logger.info(
                "LAN: a peer may no longer sync share %s (%s)", event.share.hex(), event.reason
            )

    async def chains_may_have_changed(self) -> None:
        """After a pass: a chain the relay brought is what peers are judged by from now on."""
        changed = False
        for share, sync in self._syncs.items():
            current = self.authorizer.chain(share)
            if current is None or sync.replica.chain.height > current.height:
                self.authorizer.adopt(share, _chain_copy(sync.replica.chain))
                changed = True
        if changed:
            await self.peers.chains_changed()

    # -- status ----------------------------------------------------------------------------------

    async def _report(self, home: Home) -> None:
        """Keep ``drift status`` (another process) told of the peers and their bytes."""
        while True:
            rows = [
                peer_row(
                    p.device_id,
                    p.device_name,
                    p.address,
                    p.state,
                    p.shares,
                    p.sent_bytes,
                    p.received_bytes,
                )
                for p in self.status()
            ]
            status = LanStatus(self.port, self.addresses, self.clock.now_ms(), rows)
            try:
                await asyncio.to_thread(write_status, home, status)
            except OSError as exc:
                logger.warning("LAN: cannot write the status file: %s", exc)
            await self.clock.sleep(WRITE_EVERY_S)

    def status(self) -> list[PeerStatus]:
        """One row per peer device (its links' bytes added up)."""
        rows: dict[bytes, PeerStatus] = {}
        for row in self.peers.status():
            rows.setdefault(row.device_id, row)
            if rows[row.device_id] is not row:
                kept = rows[row.device_id]
                rows[row.device_id] = dataclasses.replace(
                    kept, shares=tuple(sorted(set(kept.shares) | set(row.shares)))
                )
        return list(rows.values())


def _report_failure(task: asyncio.Task[None]) -> None:
    """A link or a watcher that died of an error nobody expected: said once, not left for the
    loop to find when the task is collected."""
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, Exception):
        logger.warning("LAN: a task failed: %s: %s", type(exc).__name__, exc)


def _static(text: str) -> StaticPeer:
    host, _, port = text.rpartition(":")
    return StaticPeer(host.strip("[]"), int(port))


def _static_seen(peer: StaticPeer, keys: Mapping[bytes, bytes]) -> PeerSeen[bytes]:
    return PeerSeen(
        instance=f"static:{peer.host}:{peer.port}",
        addresses=(peer.host,),
        port=peer.port,
        shares=frozenset(keys),
        protocol_version=None,
        source="static",
    )
