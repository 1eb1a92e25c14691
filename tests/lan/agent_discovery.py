"""Runs LAN discovery inside a test namespace and reports events as JSON lines on stdout.

    python -m tests.lan.agent_discovery --address 10.77.0.1 --port 4000 \
        --share photos=<64 hex> [--share …] [--static 10.77.0.9:4000] [--seconds 20] \
        [--skew-hours 1.5] [--move-to 10.77.0.101 --move-after 1]

Stops on SIGTERM or after ``--seconds``, announcing its departure on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from peer.lan.discovery import LanDiscovery, PeerGone, PeerSeen, StaticPeer
from peer.lan.tokens import HOUR_MS
from seams import OsRandom, SystemClock


class SkewedClock(SystemClock):
    """The system clock, off by a fixed amount: a device whose clock is wrong."""

    def __init__(self, skew_ms: int) -> None:
        self.skew_ms = skew_ms

    def now_ms(self) -> int:
        return super().now_ms() + self.skew_ms


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--share", action="append", default=[], help="label=hex discovery key")
    parser.add_argument("--static", action="append", default=[], help="host:port")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skew-hours", type=float, default=0.0, help="this device's clock error")
    parser.add_argument("--move-to", help="switch to this address after --move-after seconds")
    parser.add_argument("--move-after", type=float, default=1.0)
    return parser.parse_args(argv)


async def main(argv: list[str]) -> None:
    args = parse(argv)
    keys = {label: bytes.fromhex(key) for label, key in (s.split("=", 1) for s in args.share)}
    static = [StaticPeer(h, int(p)) for h, p in (s.rsplit(":", 1) for s in args.static)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    discovery: LanDiscovery[str] = LanDiscovery(
        port=args.port,
        discovery_keys=keys,
        bind_addresses=[args.address],
        clock=SkewedClock(int(args.skew_hours * HOUR_MS)),
        random=OsRandom(),
        static_peers=static,
    )
    async with discovery:
        say(event="started", instance=discovery.instance_name)

        async def report() -> None:
            while True:
                event = await discovery.next_event()
                if isinstance(event, PeerSeen):
                    say(
                        event="seen",
                        instance=event.instance,
                        addresses=list(event.addresses),
                        port=event.port,
                        shares=sorted(event.shares),
                        version=event.protocol_version,
                        source=event.source,
                    )
                elif isinstance(event, PeerGone):
                    say(event="gone", instance=event.instance)

        reporter = asyncio.create_task(report())
        if args.move_to:
            await asyncio.sleep(args.move_after)
            await discovery.set_addresses([args.move_to])
            say(event="moved", address=args.move_to)
        try:
            async with asyncio.timeout(args.seconds):
                await stop.wait()
        except TimeoutError:
            pass
        reporter.cancel()
    say(event="stopped")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
