"""Every live LAN link of a device, for the engine: push to all, fetch from all, status of each.

The engine adds each ``LanLink`` it opens or accepts; links that ended drop out by themselves.
``chains_changed`` passes a chain adopted on one link (or made locally) to every other peer, so
the engine calls it on ``ChainAdopted``; ``status`` is what ``drift status`` shows per peer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from peer.lan.bandwidth import LanBandwidth
from peer.lan.fetch import LanFetch, fetch_from_peers
from peer.lan.link import LanLink
from protocol.envelope import Envelope


@dataclasses.dataclass(frozen=True)
class PeerStatus:
    """One LAN peer as ``drift status`` shows it."""

    device_id: bytes
    device_name: str
    address: str
    state: str
    shares: tuple[bytes, ...]
    sent_bytes: int
    received_bytes: int


class LanPeers:
    """The links of one device (several per peer device are allowed: one each way)."""

    def __init__(self, bandwidth: LanBandwidth) -> None:
        self._bandwidth = bandwidth
        self._links: list[LanLink] = []

    def add(self, link: LanLink) -> None:
        self._links.append(link)

    def links(self, share: bytes | None = None) -> list[LanLink]:
        """Live links; with ``share``, those that have it open."""
        self._links = [link for link in self._links if not link.done.is_set()]
        if share is None:
            return list(self._links)
        return [link for link in self._links if share in link.session.shares()]

    async def push(self, share: bytes, envelopes: Sequence[Envelope]) -> int:
        """Send new local envelopes to every peer with the share open; envelopes sent in all."""
        return sum([await link.push(share, envelopes) for link in self.links(share)])

    async def chains_changed(self) -> None:
        for link in self.links():
            await link.chains_changed()

    async def fetch(self, share: bytes, chunk_ids: Iterable[bytes]) -> LanFetch:
        """Chunks from every peer with the share open, in parallel; ``missing`` is for the relay."""
        return await fetch_from_peers(self.links(share), share, chunk_ids)

    def status(self) -> list[PeerStatus]:
        counters = self._bandwidth.peers()
        out = []
        for link in self.links():
            peer = link.connection.peer
            count = counters.get(peer.device_id)
            out.append(
                PeerStatus(
                    device_id=peer.device_id,
                    device_name=peer.certificate.name,
                    address=link.connection.peer_address[0],
                    state=link.session.state.value,
                    shares=tuple(link.session.shares()),
                    sent_bytes=count.sent_bytes if count else 0,
                    received_bytes=count.received_bytes if count else 0,
                )
            )
        return out
