"""A share's keys as each consumer wants them: protocol's key ring → storage's keys."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from protocol.keyschedule import KeyRing
from storage.keys import Keyring, SealingKey, ShareKeys


@dataclass(frozen=True, eq=False)
class ShareCrypto:
    ring: KeyRing

    @functools.cached_property
    def share_keys(self) -> ShareKeys:
        stable = self.ring.share_keys
        return ShareKeys(self.ring.share_id, stable.chunking_key, stable.chunk_id_key)

    def sealing_key(self, epoch: int) -> SealingKey:
        return self._sealing(epoch)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a handful of epochs per share, kept for life
    def _sealing(self, epoch: int) -> SealingKey:
        return SealingKey(epoch, self.ring.epoch(epoch).sealing_key)

    @functools.cached_property
    def keyring(self) -> Keyring:
        return Keyring(self.sealing_key(e) for e in range(self.ring.latest_epoch + 1))

    @functools.lru_cache(maxsize=64)  # noqa: B019 - as above: asked for once per envelope
    def metadata_key(self, epoch: int) -> bytes:
        return self.ring.epoch(epoch).metadata_key
