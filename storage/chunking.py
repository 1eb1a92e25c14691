"""Content-defined chunking: FastCDC-2020 (pyfastcdc) with a per-share seed.

The chunker is pure: :meth:`Chunker.cut_points` takes a buffer and returns where chunks end;
:meth:`Chunker.stream` reads a file object with a window of at most twice the maximum chunk size,
so files of any size chunk in bounded memory. Both give the same boundaries for the same bytes.

A share's parameters are recorded once and frozen: changing any of them moves every boundary and
so defeats dedup against everything stored before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Literal

from pyfastcdc import FastCDC

from storage.errors import ParameterError
from storage.hashing import Buffer
from storage.keys import CONTEXT_FASTCDC_SEED, KEY_SIZE, derive_subkey

KiB = 1024
MiB = 1024 * KiB

ALGORITHM = "fastcdc2020"
#: The largest chunk any share may produce; blocks and manifests are bounded by it.
MAX_CHUNK_SIZE = 4 * MiB


@dataclass(frozen=True, slots=True)
class ChunkingParams:
    """The chunking a share uses, recorded with the share and never changed afterwards."""

    min_size: int = 256 * KiB
    avg_size: int = 1 * MiB
    max_size: int = 4 * MiB
    normalization: Literal[0, 1, 2, 3] = 2
    algorithm: str = ALGORITHM

    def __post_init__(self) -> None:
        if self.algorithm != ALGORITHM:
            raise ParameterError(f"unknown chunking algorithm {self.algorithm!r}")
        if self.normalization not in (0, 1, 2, 3):
            raise ParameterError("normalized chunking level must be 0, 1, 2 or 3")
        # pyfastcdc's own bounds, and ours: no chunk may exceed MAX_CHUNK_SIZE.
        if not 64 <= self.min_size <= self.avg_size <= self.max_size <= MAX_CHUNK_SIZE:
            raise ParameterError(
                "chunk sizes must satisfy 64 <= min <= avg <= max <= 4 MiB, got "
                f"{self.min_size}/{self.avg_size}/{self.max_size}"
            )
        if self.avg_size < 256 or self.max_size < 1024:
            raise ParameterError("FastCDC needs avg >= 256 and max >= 1024 bytes")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChunkingParams:
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ParameterError(f"bad chunking parameters: {exc}") from None


DEFAULT_CHUNKING = ChunkingParams()


def seed_for(chunking_key: bytes) -> int:
    """The 64-bit FastCDC gear seed of a share, from its chunking key.

    pyfastcdc treats seed 0 as "no seed" (the public gear table), so 0 maps to 1; and it shifts
    the seed left by one in a C uint64, so the seed keeps 63 bits.
    """
    if len(chunking_key) != KEY_SIZE:
        raise ParameterError(f"chunking key must be {KEY_SIZE} bytes")
    seed = int.from_bytes(derive_subkey(CONTEXT_FASTCDC_SEED, chunking_key)[:8], "little") >> 1
    return seed or 1


class Chunker:
    """Cuts bytes into content-defined chunks for one share. Reusable, not thread-safe."""

    def __init__(self, chunking_key: bytes, params: ChunkingParams = DEFAULT_CHUNKING) -> None:
        self.params = params
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=params.normalization,
            seed=seed_for(chunking_key),
        )

    def cut_points(self, buf: Buffer) -> list[int]:
        """End offsets of the chunks of a whole buffer (the last equals ``len(buf)``)."""
        return [c.offset + c.length for c in self._cdc.cut_buf(buf)]

    def stream(self, reader: BinaryIO) -> Iterator[memoryview]:
        """Chunks of a file object, in order. Each view is valid only until the next one."""
        for chunk in self._cdc.cut_stream(reader):
            yield chunk.data
