"""The seams through which sync logic meets the world: Clock, Random, Executor, Buggify.

The peer and the relay never read the wall clock, draw randomness or start threads directly; they
are handed these. Production passes the real ones below; simulations pass a virtual-time clock, a
seeded random source and an inline executor, so a seed replays a run event for event.

The Network, FileSystem and Database seams are narrower and live with their users (the relay's
database layer, the peer's folder access); they follow the same rule.
"""

from seams.buggify import NO_BUGGIFY, Buggify, NoBuggify
from seams.clock import Clock, SystemClock
from seams.executor import Executor, InlineExecutor, ThreadExecutor
from seams.random import OsRandom, RandomSource, SeededRandom

__all__ = [
    "NO_BUGGIFY",
    "Buggify",
    "Clock",
    "Executor",
    "InlineExecutor",
    "NoBuggify",
    "OsRandom",
    "RandomSource",
    "SeededRandom",
    "SystemClock",
    "ThreadExecutor",
]
