"""Key material as `storage` receives it: raw 32-byte secrets, derived elsewhere.

`storage` never derives share or epoch keys itself (that is `protocol`'s key schedule); it only
derives single-purpose subkeys from them with BLAKE3's key-derivation mode, so a key never serves
two purposes. Secrets are kept out of ``repr`` so they do not end up in logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import blake3

from storage.errors import ParameterError, UnknownEpochError

KEY_SIZE = 32
MAX_SHARE_ID_SIZE = 255
MAX_EPOCH = 2**32 - 1

# BLAKE3 derive_key contexts: globally unique, hard-coded, never reused for another purpose.
CONTEXT_FASTCDC_SEED = "driftsync 2025-11 storage v1 fastcdc seed"
CONTEXT_BODY_MAC = "driftsync 2025-11 storage v1 block body mac"
CONTEXT_BLOCK_KEY = "driftsync 2025-11 storage v1 block key"


def derive_subkey(context: str, key: bytes) -> bytes:
    return blake3.blake3(key, derive_key_context=context).digest()


def _check_key(name: str, key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ParameterError(f"{name} must be {KEY_SIZE} raw bytes")


@dataclass(frozen=True, slots=True)
class ShareKeys:
    """A share's stable keys: they outlive key epochs so dedup survives rotation."""

    share_id: bytes
    chunking_key: bytes = field(repr=False)
    chunk_id_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.share_id, bytes) or not 1 <= len(self.share_id) <= MAX_SHARE_ID_SIZE:
            raise ParameterError(f"share id must be 1 to {MAX_SHARE_ID_SIZE} bytes")
        _check_key("chunking key", self.chunking_key)
        _check_key("chunk-id key", self.chunk_id_key)


@dataclass(frozen=True, slots=True)
class SealingKey:
    """One key epoch's sealing key, with the two subkeys the block construction uses."""

    epoch: int
    key: bytes = field(repr=False)
    body_mac_key: bytes = field(init=False, repr=False)
    block_kdf_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.epoch, int) or not 0 <= self.epoch <= MAX_EPOCH:
            raise ParameterError(f"key epoch must be an integer in 0..{MAX_EPOCH}")
        _check_key("sealing key", self.key)
        object.__setattr__(self, "body_mac_key", derive_subkey(CONTEXT_BODY_MAC, self.key))
        object.__setattr__(self, "block_kdf_key", derive_subkey(CONTEXT_BLOCK_KEY, self.key))


class Keyring(Mapping[int, SealingKey]):
    """Every epoch key a device holds, for opening blocks sealed under any of them."""

    def __init__(self, keys: Iterable[SealingKey] = ()) -> None:
        self._keys: dict[int, SealingKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: SealingKey) -> None:
        known = self._keys.get(key.epoch)
        if known is not None and known.key != key.key:
            raise ParameterError(f"a different sealing key for epoch {key.epoch} is already known")
        self._keys[key.epoch] = key

    def __getitem__(self, epoch: int) -> SealingKey:
        try:
            return self._keys[epoch]
        except KeyError:
            raise UnknownEpochError(epoch) from None

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def latest(self) -> SealingKey:
        if not self._keys:
            raise ParameterError("the keyring is empty")
        return self._keys[max(self._keys)]
