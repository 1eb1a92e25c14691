"""Version vectors: {device id: highest contiguous counter seen from that device}.

A vector is immutable. ``compare`` says whether one vector knows exactly, strictly less, strictly
more than, or something concurrent with another. On the wire a vector is a compact array of
``[device_id, counter]`` pairs sorted by device id, zero counters left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from protocol.codec import Bin, Converted, Pair, Seq, UInt
from protocol.errors import DecodeError, EncodeError

DEVICE_ID_BYTES = 32
MAX_VV_ENTRIES = 4096


class Ordering(StrEnum):
    EQUAL = "equal"
    BEFORE = "before"  # the left vector is dominated by the right one
    AFTER = "after"  # the left vector dominates the right one
    CONCURRENT = "concurrent"


class VersionVector(Mapping[bytes, int]):
    """An immutable mapping device id → counter (absent means 0)."""

    __slots__ = ("_counters",)

    def __init__(self, counters: Mapping[bytes, int] | None = None) -> None:
        clean: dict[bytes, int] = {}
        for device, counter in (counters or {}).items():
            if not isinstance(device, bytes) or len(device) != DEVICE_ID_BYTES:
                raise EncodeError("a version vector is keyed by 32-byte device ids")
            if type(counter) is not int or counter < 0:
                raise EncodeError("version vector counters are non-negative integers")
            if counter:
                clean[device] = counter
        self._counters = dict(sorted(clean.items()))

    def __getitem__(self, device: bytes) -> int:
        return self._counters[device]

    def get(self, device: bytes, default: int = 0) -> int:  # type: ignore[override]
        return self._counters.get(device, default)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._counters)

    def __len__(self) -> int:
        return len(self._counters)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionVector):
            return self._counters == other._counters
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._counters.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{d.hex()[:8]}:{c}" for d, c in self._counters.items())
        return f"VersionVector({{{inner}}})"

    def with_counter(self, device: bytes, counter: int) -> VersionVector:
        return VersionVector({**self._counters, device: counter})

    def merge(self, other: Mapping[bytes, int]) -> VersionVector:
        """The pointwise maximum: everything either vector has seen."""
        merged = dict(self._counters)
        for device, counter in other.items():
            merged[device] = max(merged.get(device, 0), counter)
        return VersionVector(merged)

    def compare(self, other: Mapping[bytes, int]) -> Ordering:
        less = more = False
        for device in set(self._counters) | set(other):
            mine, theirs = self.get(device), other.get(device, 0)
            less |= mine < theirs
            more |= mine > theirs
        if less and more:
            return Ordering.CONCURRENT
        if less:
            return Ordering.BEFORE
        return Ordering.AFTER if more else Ordering.EQUAL

    def dominates(self, other: Mapping[bytes, int]) -> bool:
        """True when this vector has seen everything ``other`` has (equal counts)."""
        return all(self.get(device) >= counter for device, counter in other.items())

    def concurrent_with(self, other: Mapping[bytes, int]) -> bool:
        return self.compare(other) is Ordering.CONCURRENT

    def missing_from(self, other: Mapping[bytes, int]) -> dict[bytes, tuple[int, int]]:
        """Per device, the counter range ``(first, last)`` that ``other`` has and this lacks."""
        return {
            device: (self.get(device) + 1, counter)
            for device, counter in other.items()
            if counter > self.get(device)
        }

    def to_pairs(self) -> list[list[Any]]:
        return [[device, counter] for device, counter in self._counters.items()]

    @classmethod
    def from_pairs(cls, pairs: tuple[tuple[bytes, int], ...]) -> VersionVector:
        return cls(dict(pairs))


def _load(pairs: tuple[tuple[bytes, int], ...]) -> VersionVector:
    # Seq(ordered=True) sorts whole pairs; equal device ids with different counters pass that.
    if len({device for device, _ in pairs}) != len(pairs):
        raise DecodeError("not_canonical", "a version vector names a device twice")
    return VersionVector.from_pairs(pairs)


def _dump(vector: VersionVector) -> list[list[Any]]:
    if not isinstance(vector, VersionVector):
        vector = VersionVector(vector)
    return vector.to_pairs()


VV_KIND = Converted(
    inner=Seq(Pair(Bin.exact(DEVICE_ID_BYTES), UInt(min_value=1)), MAX_VV_ENTRIES, ordered=True),
    load=_load,
    dump=_dump,
    name="version vector: array of [device_id bin[32], counter uint ≥ 1], sorted by device_id",
)
"""The schema kind of a version vector field."""
