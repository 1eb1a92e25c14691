"""A subscriber that stops reading slows nobody and holds no queue."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from protocol.codec import pack, unpack
from relay.http.context import SERVICE
from relay.settings import Settings
from tests.conftest import free_port

from .conftest import running_relay
from .helpers import create_share, login, new_device, publish


async def test_stalled_subscriber_does_not_delay_others(tmp_path: Path) -> None:
    settings = Settings(port=free_port(), data_dir=tmp_path, heartbeat_s=30.0)
    async with running_relay(settings) as relay:
        api = relay.api
        owner = new_device()
        await login(api, owner)
        share = await create_share(api, owner)
        headers = {"Authorization": f"Bearer {owner.token}"}
        hello = pack({"type": "subscribe", "cursors": {share.hex: 0}})
        stalled = await api.session.ws_connect(api.base + "/v1/ws", headers=headers)
        await stalled.send_bytes(hello)
        live = await api.session.ws_connect(api.base + "/v1/ws", headers=headers)
        await live.send_bytes(hello)
        assert unpack(await live.receive_bytes(timeout=5))["type"] == "heads"
        # `stalled` never reads again.

        appends = 60
        started = time.perf_counter()
        for _ in range(appends):
            env = owner.next_envelope(share.share_id, share.key, update=b"u" * 4000)
            assert (await publish(api, share, owner, env)).status == 200
        latest = 0
        while latest < appends:
            latest = max(latest, unpack(await live.receive_bytes(timeout=5)).get("seq", 0))
        assert time.perf_counter() - started < 20

        hub = relay.app[SERVICE].notifier.hub
        assert hub.count == 2
        # Whatever the stalled socket has not taken is one seq for its one share: no queue.
        for sub in list(hub._by_share[share.hex]):
            assert len(sub.pending) <= 1
        await stalled.close()
        await live.close()
        await asyncio.sleep(0.1)
