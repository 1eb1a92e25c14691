"""The real relay and the real daemon inside test namespaces, for the LAN acceptance tests.

    python -m tests.lan.agent_daemon relay --listen 10.77.0.1 --port 8700 --data DIR
    python -m tests.lan.agent_daemon setup --relay URL --root DIR --devices a,b,c [--removed c]
    python -m tests.lan.agent_daemon daemon --home DIR --address 10.77.0.2
    python -m tests.lan.agent_daemon check --home DIR [--home DIR…] --share ID

``setup`` makes a home and a folder per device under ``--root`` (one user each; the first owns
the share, the others join as editors; ``--removed`` is then removed by the owner). ``daemon`` runs
``DeviceNode.run`` (LAN peers on, on ``--address`` only) until SIGTERM. ``check`` asks the relay
for its version vector and log and which of the blocks the device's envelopes reference it holds.
Every agent reports JSON lines on stdout; the test reads folders and homes from the file system.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from aiohttp import ClientTimeout, web

from peer.device.config import DeviceConfig
from peer.device.home import Home
from peer.device.identity import init_identity
from peer.engine.lannode import DeviceLan
from peer.engine.node import DeviceNode
from peer.engine.shares import InviteCode, create_share, invite_member, join_share, remove_member
from peer.lan.link import LinkTimings
from peer.remote.backoff import Backoff
from protocol.chain import Role
from protocol.envelope import Envelope
from relay.http import create_app
from relay.settings import Settings
from seams import SystemClock
from seams.random import OsRandom


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def until_sigterm() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()


async def relay(args: argparse.Namespace) -> None:
    # Plain HTTP on the namespace's address: the settings name loopback (which allows it) and the
    # origin the devices dial; the site below listens on the test network only.
    settings = Settings(
        host="127.0.0.1",
        port=args.port,
        origin=f"http://{args.listen}:{args.port}",
        data_dir=Path(args.data),
        heartbeat_s=1.0,
        writes_per_minute_per_user=1_000_000,
        sqlite_synchronous="NORMAL",
    )
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.listen, args.port).start()
    say(event="listening", url=f"http://{args.listen}:{args.port}")
    try:
        await until_sigterm()
    finally:
        await runner.cleanup()


def home_of(root: Path, name: str) -> Home:
    return Home(root / f"home-{name}")


async def setup(args: argparse.Namespace) -> None:
    root = Path(args.root)
    clock, rng = SystemClock(), OsRandom()
    names = args.devices.split(",")
    nodes: dict[str, DeviceNode] = {}
    for name in names:
        home = home_of(root, name)
        init_identity(home, name, clock, rng)
        DeviceConfig(device_name=name, relay_url=args.relay).save(home.config)
        nodes[name] = DeviceNode(home, watch=False)
    owner = nodes[names[0]]
    share = await create_share(
        owner.home,
        owner.config,
        owner.device,
        owner.link,
        root / f"folder-{names[0]}",
        name="shared",
        clock=clock,
        rng=rng,
    )
    for name in names[1:]:
        other = nodes[name]
        code = await invite_member(
            owner.home,
            owner.config,
            owner.device,
            owner.link,
            share,
            other.device.certificate.user_key,
            Role.EDITOR,
            clock=clock,
            rng=rng,
        )
        await join_share(
            other.home,
            other.config,
            other.device,
            other.link,
            InviteCode.from_text(code),
            root / f"folder-{name}",
        )
    for node in nodes.values():
        await node.sync_once()
    if args.removed:
        removed = nodes[args.removed]
        await remove_member(
            owner.home,
            owner.device,
            owner.link,
            share,
            removed.device.certificate.user_key,
            clock=clock,
            rng=rng,
        )
        for name, node in nodes.items():
            if name != args.removed:
                await node.sync_once()  # the new chain and the new epoch's keys
    for node in nodes.values():
        await node.close()
    say(event="ready", share=share)


async def daemon(args: argparse.Namespace) -> None:
    home = Home(Path(args.home))
    config = DeviceConfig.load(home.config)
    config.lan_enabled = True
    config.lan_addresses = [args.address]
    config.watch_delay_ms = 20
    config.upload_limit_kib_s = args.up_kib_s
    config.download_limit_kib_s = args.down_kib_s
    config.save(home.config)
    if args.idle_timeout_s:
        DeviceLan.link_timings = LinkTimings(
            heartbeat_s=args.idle_timeout_s / 3, idle_timeout_s=args.idle_timeout_s
        )
    node = DeviceNode(home, watch=True)
    # The relay's address drops packets while its link is cut: give up on it quickly.
    node.link.backoff = Backoff(base_s=0.1, cap_s=0.5, attempts=2)  # type: ignore[attr-defined]
    node.link.timeout = ClientTimeout(total=10, sock_connect=2)  # type: ignore[attr-defined]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    run = asyncio.create_task(node.run(stop))
    while node.lan is None and not run.done():  # noqa: ASYNC110 - set inside run()
        await asyncio.sleep(0.05)
    say(event="running", port=node.lan.port if node.lan else 0)
    await run
    relay_up, relay_down = node.link.bytes_up, node.link.bytes_down  # type: ignore[attr-defined]
    await node.close()
    say(event="stopped", relay_sent_bytes=relay_up, relay_received_bytes=relay_down)


async def check(args: argparse.Namespace) -> None:
    """The relay as the first home's device sees it, and each home's own vector."""
    nodes = [DeviceNode(Home(Path(h)), watch=False) for h in args.home]
    try:
        link = nodes[0].link
        vector = await link.server_vector(args.share)
        entries = 0
        since = 0
        while True:
            page = await link.read_log(args.share, since)
            entries += len(page.entries)
            if not page.more or not page.entries:
                break
            since = page.entries[-1][0]
        referenced: set[bytes] = set()
        for node in nodes:
            for body in node.share(args.share).replica.envelopes.envelopes_after({}):
                referenced.update(Envelope.decode(body).header.blocks)
        have = await link.have_blocks(args.share, sorted(referenced)) if referenced else set()
        say(
            event="relay",
            vector=vector,
            log_entries=entries,
            referenced_blocks=len(referenced),
            blocks_at_relay=len(have),
            device_vectors=[
                {d.hex(): c for d, c in n.share(args.share).replica.tips_vector().items()}
                for n in nodes
            ],
        )
    finally:
        for node in nodes:
            await node.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("relay")
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--data", required=True)
    p = sub.add_parser("setup")
    p.add_argument("--relay", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--devices", required=True)
    p.add_argument("--removed", default="")
    p = sub.add_parser("daemon")
    p.add_argument("--home", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--up-kib-s", type=int, default=0)
    p.add_argument("--down-kib-s", type=int, default=0)
    p.add_argument("--idle-timeout-s", type=float, default=0.0)
    p = sub.add_parser("check")
    p.add_argument("--home", action="append", required=True)
    p.add_argument("--share", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    runner = {"relay": relay, "setup": setup, "daemon": daemon, "check": check}[args.mode]
    asyncio.run(runner(args))


if __name__ == "__main__":
    main(sys.argv[1:])
