"""Network faults as one seeded record, drawn per run like tigerbeetle's ``options_swarm``.

A *stream* (TCP-like connection) never loses, duplicates or reorders a frame: loss shows as a
retransmission delay (``stream_loss``, ``rto_ms``) that holds back every later frame too, and a
connection that cannot get through (partition, crashed host, ``reset`` fault) breaks with a reset.
*Datagrams* (mDNS-style announcements) are lost, duplicated and reordered outright.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum

from seams import SeededRandom
from simulations.runtime.errors import SimulationError


class LinkKind(StrEnum):
    """LAN: both hosts on the same LAN segment. WAN: anything else (in driftsync, the relay)."""

    LAN = "lan"
    WAN = "wan"


@dataclass(frozen=True)
class LinkProfile:
    """How one kind of link behaves. Each directed link draws its own base one-way latency from
    ``latency_ms`` once per run; every message adds up to ``jitter_ms`` more."""

    latency_ms: tuple[float, float]
    jitter_ms: float = 0.0
    bandwidth_bytes_per_s: float | None = None

    def validate(self) -> None:
        low, high = self.latency_ms
        if not 0 <= low <= high:
            raise SimulationError(f"latency_ms must be 0 <= low <= high, got {self.latency_ms}")
        if self.jitter_ms < 0:
            raise SimulationError(f"jitter_ms must be >= 0, got {self.jitter_ms}")
        if self.bandwidth_bytes_per_s is not None and self.bandwidth_bytes_per_s <= 0:
            raise SimulationError("bandwidth_bytes_per_s must be positive or None (unlimited)")


@dataclass(frozen=True)
class NetFaults:
    lan: LinkProfile = field(default_factory=lambda: LinkProfile(latency_ms=(0.2, 2.0)))
    wan: LinkProfile = field(default_factory=lambda: LinkProfile(latency_ms=(10.0, 60.0)))
    # Streams: a lost segment is retransmitted after an RTO, delaying it and all frames after it.
    stream_loss: float = 0.0
    rto_ms: tuple[float, float] = (200.0, 1000.0)
    # Per frame sent: the network resets the connection (a middlebox, a NAT rebinding).
    reset: float = 0.0
    # A connection that cannot get through lives this long, then both ends see a reset.
    break_after_ms: float = 5_000.0
    connect_timeout_ms: float = 3_000.0
    # Bytes a sender may have in flight on one connection before ``send`` waits (backpressure).
    window_bytes: int = 1 << 20
    # Datagrams only.
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_ms: tuple[float, float] = (1.0, 200.0)

    def __post_init__(self) -> None:
        self.lan.validate()
        self.wan.validate()
        for name in ("stream_loss", "reset", "loss", "dup", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise SimulationError(f"{name} is a probability in [0, 1], got {p}")
        for name in ("rto_ms", "reorder_ms"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise SimulationError(f"{name} must be 0 <= low <= high, got {(low, high)}")
        if self.break_after_ms < 0 or self.connect_timeout_ms < 0 or self.window_bytes <= 0:
            raise SimulationError("timeouts must be >= 0 and window_bytes > 0")

    def profile(self, kind: LinkKind) -> LinkProfile:
        return self.lan if kind is LinkKind.LAN else self.wan

    def describe(self) -> list[str]:
        """One ``name=value`` per field, for the log line every seeded run starts with."""
        return [f"{f.name}={getattr(self, f.name)}" for f in fields(self)]


def swarm_faults(rng: SeededRandom) -> NetFaults:
    """Draw a fault mix from the seed. Each fault is on in about half the runs, at a random
    strength, so some seeds test a clean network and others a hostile one."""

    def maybe(p_on: float, low: float, high: float) -> float:
        on = rng.uniform(0.0, 1.0) < p_on
        value = rng.uniform(low, high)
        return value if on else 0.0

    lan_low = rng.uniform(0.1, 2.0)
    wan_low = rng.uniform(5.0, 80.0)
    lan_bw = rng.uniform(2e6, 120e6)
    wan_bw = rng.uniform(1e5, 12e6)
    limit_bw = rng.uniform(0.0, 1.0) < 0.5
    return NetFaults(
        lan=LinkProfile(
            latency_ms=(lan_low, lan_low + rng.uniform(0.0, 5.0)),
            jitter_ms=maybe(0.5, 0.0, 5.0),
            bandwidth_bytes_per_s=lan_bw if limit_bw else None,
        ),
        wan=LinkProfile(
            latency_ms=(wan_low, wan_low + rng.uniform(0.0, 150.0)),
            jitter_ms=maybe(0.5, 0.0, 50.0),
            bandwidth_bytes_per_s=wan_bw if limit_bw else None,
        ),
        stream_loss=maybe(0.5, 0.0, 0.05),
        reset=maybe(0.3, 0.0, 0.01),
        break_after_ms=rng.uniform(1_000.0, 30_000.0),
        connect_timeout_ms=rng.uniform(1_000.0, 10_000.0),
        loss=maybe(0.5, 0.0, 0.3),
        dup=maybe(0.5, 0.0, 0.2),
        reorder=maybe(0.5, 0.0, 0.3),
    )
