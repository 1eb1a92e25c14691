"""Notifications across relay processes over Redis pub/sub.

Each process subscribes once to the pattern ``<prefix>seq:*`` and fans messages out to its own
hub; an append is also delivered locally at once. Redis pub/sub is at-most-once: a message lost
while a connection is down is recovered by the service's periodic head refresh from the database
(and every heartbeat carries the latest seq), so a subscriber is late by at most one heartbeat,
never wrong. The listener reconnects with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from relay.notify.hub import Hub, Subscription
from seams import Clock, RandomSource
from seams.tasks import end_tasks

log = logging.getLogger("relay.notify")


class RedisNotifier:
    def __init__(self, url: str, prefix: str, clock: Clock, rng: RandomSource) -> None:
        self.hub = Hub()
        self._url = url
        self._prefix = prefix
        self._clock = clock
        self._rng = rng
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def _channel(self, share_id: str) -> str:
        return f"{self._prefix}seq:{share_id}"

    async def start(self) -> None:
        self._client = aioredis.from_url(self._url)
        self._task = asyncio.create_task(self._listen(), name="relay-redis-listener")
        # Publications made before the pattern subscription exists would be missed by this
        # process; wait for it (bounded) so a fresh relay starts in step.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._subscribed.wait()

    async def _listen(self) -> None:
        assert self._client is not None
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(f"{self._prefix}seq:*")
                self._subscribed.set()
                backoff = 0.05
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    self._on_message(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                log.warning("redis subscription lost, reconnecting: %s", type(exc).__name__)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await self._clock.sleep(backoff * self._rng.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 5.0)

    def _on_message(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        share_id = name.removeprefix(f"{self._prefix}seq:")
        try:
            seq = int(data)
        except ValueError:
            log.warning("ignoring malformed notification on redis")
            return
        self.hub.deliver(share_id, seq)

    async def publish(self, share_id: str, seq: int) -> None:
        self.hub.deliver(share_id, seq)
        if self._client is None:
            return
        try:
            await self._client.publish(self._channel(share_id), str(seq))
        except (RedisError, OSError) as exc:
            # The append is durable; other processes learn of it at their next head refresh.
            log.warning("redis publish failed: %s", type(exc).__name__)

    def subscribe(self, share_ids: Iterable[str]) -> Subscription:
        return self.hub.add(share_ids)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await end_tasks([task], log)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
