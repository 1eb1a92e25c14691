"""A device running real LAN sessions inside a namespace: serves a share, or joins one by mDNS.

    python -m tests.lan.agent_session serve --who laptop --listen 10.77.0.1 [--corrupt]
    python -m tests.lan.agent_session join --who phone --listen 10.77.0.3 --peers 2

Every agent builds the same ``tests.lan.world.World`` from ``--world-seed``, so all hold the same
users, certificates and membership chain; each plays the device ``--who``. A server announces the
share over mDNS and serves its envelopes and chunks (``--corrupt``: wrong bytes for every chunk)
until SIGTERM, then reports what it served and to whom. A joiner finds ``--peers`` servers by mDNS,
connects to each, and (if admitted) syncs envelopes and fetches every chunk across all of them.
Reports JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys

from peer.lan import events as ev
from peer.lan.discovery import LanDiscovery, PeerSeen
from peer.lan.errors import LanError, Unauthorized
from peer.lan.fetch import fetch_from_peers
from peer.lan.link import LanLink
from protocol.keys import CertifiedDevice
from protocol.vv import VersionVector
from seams import OsRandom, SystemClock
from tests.lan.world import World, chunk_id_of, node, side, until

SHARE_KEY = bytes(range(100, 132))  # the share's LAN discovery key, known to every agent
CHUNKS = [random.Random(f"chunk/{i}").randbytes(48 * 1024) for i in range(8)]
IDS = [chunk_id_of(c) for c in CHUNKS]
DEVICES = ("laptop", "desktop", "phone", "outsider_pc", "removed_pc", "tablet")


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def names(world: World) -> dict[bytes, str]:
    return {getattr(world, name).device_id: name for name in DEVICES}


def discovery(address: str, port: int) -> LanDiscovery[str]:
    return LanDiscovery(
        port=port,
        discovery_keys={"share": SHARE_KEY},
        bind_addresses=[address],
        clock=SystemClock(),
        random=OsRandom(),
    )


def envelopes_of(world: World, device: CertifiedDevice, name: str) -> list:
    return world.envelopes(device, {"laptop": 3, "phone": 2}.get(name, 0))


async def serve(args: argparse.Namespace, world: World) -> None:
    device: CertifiedDevice = getattr(world, args.who)
    me = node(
        side(device, world.authorizer(), envelopes_of(world, device, args.who), CHUNKS),
    )
    me.side.chunks.corrupt = args.corrupt
    port = await me.serve(args.listen)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with discovery(args.listen, port):
        say(event="listening", port=port)
        await stop.wait()
    who = names(world)
    say(
        event="served",
        links=sorted(who[link.peer_device_id] for link in me.links),
        chunks=me.side.chunks.served,
        envelopes=me.side.envelopes.served,
        sent_bytes={who[p]: c.sent_bytes for p, c in me.bandwidth.peers().items()},
    )
    await me.close()


async def find(address: str, count: int) -> list[tuple[str, int]]:
    """Where ``count`` devices announcing our share listen (a joiner serves nothing: port 1)."""
    found: dict[str, tuple[str, int]] = {}
    async with discovery(address, 1) as finder, asyncio.timeout(20):
        while len(found) < count:
            event = await finder.next_event()
            if isinstance(event, PeerSeen) and "share" in event.shares:
                found[event.instance] = (event.addresses[0], event.port)
    return sorted(found.values())


async def join(args: argparse.Namespace, world: World) -> None:
    device: CertifiedDevice = getattr(world, args.who)
    me = node(side(device, world.authorizer(height=1), envelopes_of(world, device, args.who)))
    places = await find(args.listen, args.peers)
    say(event="discovered", addresses=[address for address, _ in places])
    links: list[LanLink] = []
    for address, port in places:
        try:
            links.append(await me.dial(address, port))
            say(event="connected", address=address)
        except Unauthorized as exc:
            say(event="refused", address=address, reason=str(exc))
    if links:
        expected = VersionVector({world.laptop.device_id: 3, world.phone.device_id: 2})
        with contextlib.suppress(TimeoutError):
            await until(lambda: me.side.envelopes.vector(world.share) == expected, 10)
        await until(lambda: all(world.share in link.session.shares() for link in links), 10)
        result = await fetch_from_peers(links, world.share, IDS)
        who = names(world)
        say(
            event="fetched",
            complete=result.chunks == dict(zip(IDS, CHUNKS, strict=True)),
            missing=len(result.missing),
            bytes_from={who[p]: n for p, n in result.bytes_from.items()},
            misbehaved=sorted(
                who[link.peer_device_id] for link in links if link.session.state.value == "error"
            ),
        )
    else:
        await asyncio.sleep(1.0)  # whatever a server would push, it would have by now
    say(
        event="done",
        chain_height=me.side.authorizer.chain(world.share).height,
        envelopes=len(me.side.envelopes.stored),
        misbehaviour_seen=sum(isinstance(e, ev.PeerMisbehaved) for e in me.events),
    )
    with contextlib.suppress(LanError):
        await me.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "join"])
    parser.add_argument("--who", choices=DEVICES, required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--peers", type=int, default=1)
    parser.add_argument("--corrupt", action="store_true")
    parser.add_argument("--world-seed", type=int, default=11)
    args = parser.parse_args(argv)
    world = World.build(args.world_seed)
    asyncio.run(serve(args, world) if args.mode == "serve" else join(args, world))


if __name__ == "__main__":
    main(sys.argv[1:])
