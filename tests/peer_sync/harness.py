"""A real relay on loopback and devices in temp folders, for the peer's end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from peer.device.config import DeviceConfig
from peer.device.home import Home
from peer.device.identity import init_identity, load_user
from peer.engine.node import DeviceNode
from peer.engine.shares import InviteCode, create_share, invite_member, join_share
from protocol.chain import Role
from relay.http import create_app
from relay.settings import Settings
from seams import SystemClock
from seams.random import OsRandom
from tests.conftest import free_port


@asynccontextmanager
async def running_relay(
    data_dir: Path, port: int | None = None, **overrides: object
) -> AsyncIterator[str]:
    port = port or free_port()
    settings = Settings(
        host="127.0.0.1",
        port=port,
        data_dir=data_dir,
        heartbeat_s=1.0,
        writes_per_minute_per_user=1_000_000,
        sqlite_synchronous="NORMAL",
        **overrides,  # type: ignore[arg-type]
    )
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Dev:
    name: str
    home: Home
    folder: Path
    node: DeviceNode

    @property
    def user_key(self) -> bytes:
        return self.node.device.certificate.user_key

    async def sync(self) -> None:
        await self.node.sync_once()

    def files(self) -> dict[str, bytes]:
        """Every file under the folder (but ours) → its bytes."""
        out = {}
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder).as_posix()
            if rel.startswith(".drift") or not path.is_file():
                continue
            out[rel] = path.read_bytes()
        return out

    def dirs(self) -> set[str]:
        return {
            p.relative_to(self.folder).as_posix()
            for p in self.folder.rglob("*")
            if p.is_dir() and not p.relative_to(self.folder).as_posix().startswith(".drift")
        }


def make_device(tmp: Path, name: str, relay_url: str) -> Dev:
    home = Home(tmp / f"home-{name}")
    init_identity(home, name, SystemClock(), OsRandom())
    # Relay-only: the LAN tests (tests/lan) turn LAN peers on where they want them.
    config = DeviceConfig(device_name=name, relay_url=relay_url, lan_enabled=False)
    config.save(home.config)
    return Dev(name, home, tmp / f"folder-{name}", DeviceNode(home, watch=False))


async def share_between(owner: Dev, *others: Dev, role: Role = Role.EDITOR) -> str:
    clock, rng = SystemClock(), OsRandom()
    share = await create_share(
        owner.home,
        owner.node.config,
        owner.node.device,
        owner.node.link,
        owner.folder,
        name="shared",
        clock=clock,
        rng=rng,
    )
    for other in others:
        code = await invite_member(
            owner.home,
            owner.node.config,
            owner.node.device,
            owner.node.link,
            share,
            other.user_key,
            role,
            clock=clock,
            rng=rng,
        )
        await join_share(
            other.home,
            other.node.config,
            other.node.device,
            other.node.link,
            InviteCode.from_text(code),
            other.folder,
        )
    return share


def second_device(tmp: Path, first: Dev, name: str, relay_url: str) -> Dev:
    """Another device of ``first``'s user, certified by the user key held on ``first``."""
    from peer.device.identity import install_certificate, new_device_key

    home = Home(tmp / f"home-{name}")
    user = load_user(first.home)
    assert user is not None
    device = new_device_key(home, OsRandom())
    install_certificate(home, user.certify(device.public_key, name, SystemClock().now_ms()))
    DeviceConfig(device_name=name, relay_url=relay_url, lan_enabled=False).save(home.config)
    return Dev(name, home, tmp / f"folder-{name}", DeviceNode(home, watch=False))


async def settle(devs: list[Dev], rounds: int = 3) -> None:
    """Sync every device in turn until a round changes nothing (bounded)."""
    for _ in range(rounds):
        for dev in devs:
            await dev.sync()


async def wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
