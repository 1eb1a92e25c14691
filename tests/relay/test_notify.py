"""Notifiers: in-process fan-out, and Redis pub/sub across two notifiers (two relay processes)."""

from __future__ import annotations

import asyncio

from relay.notify import LocalNotifier, Notifier
from relay.notify.hub import Hub
from relay.notify.redis import RedisNotifier
from seams import SeededRandom, SystemClock

from .conftest import REDIS_URL


async def test_hub_coalesces_and_never_queues() -> None:
    hub = Hub()
    slow = hub.add(["s1", "s2"])
    other = hub.add(["s2"])
    for seq in range(1, 1001):
        hub.deliver("s1", seq)
    hub.deliver("s2", 7)
    hub.deliver("s2", 3)  # older than what was seen: nothing to say
    assert slow.pending == {"s1": 1000, "s2": 7}
    assert await slow.wait(0.01) == {"s1": 1000, "s2": 7}
    assert await slow.wait(0.01) == {}
    assert await other.wait(0.01) == {"s2": 7}
    slow.close()
    other.close()
    assert hub.count == 0
    assert hub.followed() == []


async def test_local_notifier_wakes_a_waiting_subscriber() -> None:
    notifier = LocalNotifier()
    sub = notifier.subscribe(["s1"])
    waiter = asyncio.create_task(sub.wait(5))
    await asyncio.sleep(0)
    await notifier.publish("s1", 4)
    assert await asyncio.wait_for(waiter, 1) == {"s1": 4}
    sub.close()


async def test_redis_notifies_another_process(redis_prefix: str) -> None:
    clock, rng = SystemClock(), SeededRandom(1)
    a: Notifier = RedisNotifier(REDIS_URL, redis_prefix, clock, rng)
    b: Notifier = RedisNotifier(REDIS_URL, redis_prefix, clock, rng)
    await a.start()
    await b.start()
    try:
        sub = b.subscribe(["s1"])
        unrelated = b.subscribe(["s2"])
        await a.publish("s1", 9)
        assert await sub.wait(2) == {"s1": 9}
        assert await unrelated.wait(0.05) == {}
        sub.close()
        unrelated.close()
    finally:
        await a.close()
        await b.close()


async def test_fan_out_follows_subscription_order() -> None:
    hub = Hub()
    order: list[int] = []
    subs = [hub.add(["s1", "s0"]) for _ in range(50)]
    for index, sub in enumerate(subs):
        sub.listener = lambda index=index: order.append(index)
    hub.deliver("s1", 1)
    assert order == list(range(50))
    subs[10].close()
    order.clear()
    hub.deliver("s1", 2)
    assert order == [i for i in range(50) if i != 10]
