"""Padmé padding (Nikitin et al., PETS 2019) with a floor, for sealed block sizes.

Padmé rounds a length L up so that only about log2(log2(L)) bits of it stay visible, costing at
most 12% overhead. The floor keeps every small file at the same sealed size, so its exact length
(a fingerprint, and a leak of chunk sizes to a FastCDC seed-recovery attack) never shows.
"""

from __future__ import annotations

#: No sealed block is smaller than this.
MIN_SEALED_SIZE = 4096


def padme(length: int) -> int:
    if length < 0:
        raise ValueError("length must be non-negative")
    if length < 2:
        return length
    exponent = length.bit_length() - 1  # floor(log2 L)
    visible_bits = exponent.bit_length()  # floor(log2 E) + 1
    mask = (1 << (exponent - visible_bits)) - 1
    return (length + mask) & ~mask


def padded_size(length: int) -> int:
    return max(MIN_SEALED_SIZE, padme(length))
