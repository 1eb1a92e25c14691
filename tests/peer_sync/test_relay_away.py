"""With LAN peers and the relay gone, a pass fails fast on the relay and does its LAN work.

Simulation seeds 440 and 534: the notification socket had not noticed the relay go, so a pass
skipped its bounded log read and the first relay call was an upload's "which blocks do you
have?", retried with backoff for a minute, then the LAN catch-up's, another minute; envelopes
LAN peers sent waited in the inbox meanwhile, their author was restored from an older backup,
and the versions they named had no bytes anywhere. Here the LAN is two shares' sync objects
wired together in process (``Bridge``); the relay is a real one, stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

from peer.engine.sync import ShareSync
from peer.errors import RelayUnreachable
from peer.lan.fetch import LanFetch
from peer.remote.backoff import Backoff
from peer.remote.http import HttpRelayLink
from peer.remote.link import relay_fail_fast
from protocol.envelope import Envelope
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity
from seams import OsRandom, SystemClock
from tests.conftest import free_port

from .harness import make_device, running_relay, share_between

if TYPE_CHECKING:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.tracing import Trace

PASS_BOUND_S = 3.0
"""Far above a pass on loopback; below one request's retries with the default backoff (at
least 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of waiting between its six tries)."""


class Bridge:
    """What a pass asks of ``LanPeers`` (links, push, fetch), served by one peer's share."""

    def __init__(self, peer: ShareSync) -> None:
        self.peer = peer
        self.serving = True  # False: the link is up but delivers nothing (it drops mid-fetch)

    def links(self, share: bytes | None = None) -> list[object]:
        return [self]

    async def push(self, share: bytes, envelopes: Sequence[Envelope]) -> int:
        self.peer.lan.received(list(envelopes))
        return len(envelopes)

    async def fetch(self, share: bytes, chunk_ids: Iterable[bytes]) -> LanFetch:
        wanted = list(chunk_ids)
        got: dict[bytes, bytes] = {}
        for chunk_id in wanted if self.serving else []:
            data = self.peer.lan.chunk(share, chunk_id)
            if data is not None:
                got[chunk_id] = data
        sent = sum(len(d) for d in got.values())
        missing = [c for c in wanted if c not in got]
        return LanFetch(got, missing, {self.peer.replica.device.device_id: sent})


def lan_between(a: ShareSync, b: ShareSync) -> tuple[Bridge, Bridge]:
    """Each share gets the other as its LAN peer, as ``DeviceLan.start`` sets a share up."""
    to_b, to_a = Bridge(b), Bridge(a)
    for sync, bridge in ((a, to_b), (b, to_a)):
        sync.lan.peers = bridge  # type: ignore[assignment]
        sync.blocks.defer_when_unreachable = True
        sync.blocks.keep_deferred = sync.lan.keep_deferred
    return to_b, to_a


def socket_says_quiet(sync: ShareSync) -> None:
    """The notification socket has not noticed the relay go: it says the log holds nothing new,
    so the pass skips its bounded log read (``ShareSync._log_quiet``)."""
    replica = sync.replica
    sync.link.known_head = lambda share: (replica.cursor, replica.chain.height)  # type: ignore[method-assign]


async def timed_pass(sync: ShareSync) -> float:
    started = time.monotonic()
    with pytest.raises(RelayUnreachable):
        await sync.run_pass()
    return time.monotonic() - started


async def test_a_pass_fails_fast_on_a_relay_gone_and_the_lan_peer_keeps_the_change(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay") as url:
        a, b = make_device(tmp_path, "a", url), make_device(tmp_path, "b", url)
        share = await share_between(a, b)
        await a.sync()
        await b.sync()
    # The relay is gone: its port refuses connections.
    sa, sb = a.node.share(share), b.node.share(share)
    try:
        _, to_a = lan_between(sa, sb)
        socket_says_quiet(sa)
        socket_says_quiet(sb)
        (a.folder / "written-offline.txt").write_bytes(b"only a and its LAN peer have this")
        # a's blocks cannot go up: the first relay call fails at once, the rest of the pass
        # skips the relay, and the new envelope goes to the LAN peer.
        assert await timed_pass(sa) < PASS_BOUND_S
        assert sa.relay_down is not None  # the probe watches for the relay now
        # b applies it; a's link drops as b asks for the block, and b's own first relay call
        # (the download's, no peer having delivered the file) fails at once too.
        to_a.serving = False
        assert await timed_pass(sb) < PASS_BOUND_S
        assert sb.tree.lookup("written-offline.txt") is not None
        # The link is back: the next pass asks for the block again and keeps it for the relay.
        to_a.serving = True
        assert await timed_pass(sb) < PASS_BOUND_S
        entry = sb.tree.lookup("written-offline.txt")
        assert entry is not None
        assert entry.version is not None
        block = entry.version.manifest[:32]
        assert sb.lan.store.deferred_block(block) is not None  # a may be wiped now
        assert (b.folder / "written-offline.txt").read_bytes() == (
            b"only a and its LAN peer have this"
        )
    finally:
        for sync in (sa, sb):
            sync.stop_probe()
        await a.node.close()
        await b.node.close()


class CountingConnector(aiohttp.TCPConnector):
    """Counts the connections a link tries to open."""

    tries = 0

    # The signature is aiohttp's (BaseConnector._create_connection), timeout parameter included.
    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> ResponseHandler:
        CountingConnector.tries += 1
        return await super()._create_connection(req, traces, timeout)


async def test_failing_fast_a_relay_that_refuses_connections_is_tried_once() -> None:
    user, identity = UserIdentity.generate(), DeviceIdentity.generate()
    device = CertifiedDevice(
        identity, user.certify(identity.public_key, "laptop", time.time_ns() // 10**6)
    )
    link = HttpRelayLink(
        f"http://127.0.0.1:{free_port()}",  # nothing listens there
        device,
        clock=SystemClock(),
        rng=OsRandom(),
        backoff=Backoff(base_s=0.01, cap_s=0.02, attempts=3),
        connector_factory=CountingConnector,
    )
    try:
        CountingConnector.tries = 0
        with pytest.raises(RelayUnreachable):
            await link.have_blocks("ab" * 16, [b"\0" * 32])
        assert CountingConnector.tries == 3  # outside: every try of the login
        CountingConnector.tries = 0
        with relay_fail_fast(), pytest.raises(RelayUnreachable):
            await link.have_blocks("ab" * 16, [b"\0" * 32])
        assert CountingConnector.tries == 1
    finally:
        await link.close()
