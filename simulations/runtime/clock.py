"""``seams.Clock`` on the virtual-time loop: wall time is a fixed epoch plus virtual seconds."""

from __future__ import annotations

import asyncio

from simulations.runtime.errors import SimulationError
from simulations.runtime.loop import VirtualTimeLoop

# 2026-01-01T00:00:00Z: a fixed start, so timestamps that leave the process replay too.
DEFAULT_EPOCH_MS = 1_767_225_600_000


class SimClock:
    """The clock a simulated device or relay is handed; ``skew_ms`` models a wrong wall clock."""

    def __init__(self, epoch_ms: int = DEFAULT_EPOCH_MS, skew_ms: int = 0) -> None:
        self.epoch_ms = epoch_ms
        self.skew_ms = skew_ms

    def now_ms(self) -> int:
        return self.epoch_ms + self.skew_ms + int(_virtual_loop().time() * 1000)

    def monotonic(self) -> float:
        return _virtual_loop().time()

    async def sleep(self, seconds: float) -> None:
        _virtual_loop()
        await asyncio.sleep(seconds)


def _virtual_loop() -> VirtualTimeLoop:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise SimulationError("SimClock is read outside a running VirtualTimeLoop") from None
    if not isinstance(loop, VirtualTimeLoop):
        raise SimulationError(
            f"SimClock on a {type(loop).__name__}: it only means something on a VirtualTimeLoop"
        )
    return loop
