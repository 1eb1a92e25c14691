"""The order in which envelopes that travelled only over the LAN are sent to the relay.

The relay appends an envelope only after every envelope its seen-vector names (and refuses a whole
batch at the first that comes too early). After a LAN-only period, each device's envelopes have
seen the others', so sending them device by device can never succeed: every device's first batch
waits on another's. ``causal_order`` interleaves them so each comes after what it has seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import TypeVar

from protocol.envelope import Envelope

T = TypeVar("T")


def causal_order(items: Iterable[tuple[Envelope, T]]) -> list[tuple[Envelope, T]]:
    """``items`` (an envelope, and what goes with it) with each envelope after the ones among
    them that precede it on its device or that it has seen. What the items lack (held by the
    relay, or not here at all) constrains nothing; a cycle, which honest envelopes never form,
    leaves the rest in device and counter order."""
    queues: dict[bytes, deque[tuple[Envelope, T]]] = {}
    for item in sorted(items, key=lambda i: (i[0].header.device, i[0].header.counter)):
        queues.setdefault(item[0].header.device, deque()).append(item)
    ordered: list[tuple[Envelope, T]] = []
    progress = True
    while progress:
        progress = False
        for device in sorted(queues):
            queue = queues[device]
            while queue and _ready(queue[0][0], queues):
                ordered.append(queue.popleft())
                progress = True
    for device in sorted(queues):
        ordered.extend(queues[device])
    return ordered


def _ready(envelope: Envelope, queues: dict[bytes, deque[tuple[Envelope, T]]]) -> bool:
    for device, counter in envelope.header.seen.items():
        if device == envelope.header.device:
            continue
        waiting: Sequence[tuple[Envelope, T]] = queues.get(device, ())
        if waiting and waiting[0][0].header.counter <= counter:
            return False
    return True
