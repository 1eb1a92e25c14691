"""Fetching chunks from several LAN peers at once; what none of them delivers is left for the relay.

The wanted chunks are dealt out among the peers that have the share open, all asked in parallel.
A chunk a peer lacks, or could not deliver (it served a corrupt chunk and was dropped, or its link
broke), is asked of the next peer that has not been tried for it. Every chunk returned has been
verified against its id by the session that received it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence

from peer.lan.link import LanLink


@dataclasses.dataclass
class LanFetch:
    """What a fetch got: chunks by id, those no peer delivered, and bytes per peer device."""

    chunks: dict[bytes, bytes]
    missing: list[bytes]
    bytes_from: dict[bytes, int]


async def fetch_from_peers(
    links: Sequence[LanLink], share: bytes, chunk_ids: Iterable[bytes]
) -> LanFetch:
    """Ask ``links`` (in parallel) for ``chunk_ids``; ``missing`` is for the relay."""
    wanted = list(dict.fromkeys(chunk_ids))
    tried: dict[bytes, set[int]] = {c: set() for c in wanted}
    result = LanFetch(chunks={}, missing=[], bytes_from={})
    while True:
        usable = [
            i
            for i, link in enumerate(links)
            if not link.done.is_set() and share in link.session.shares()
        ]
        plan: dict[int, list[bytes]] = {}
        for n, chunk_id in enumerate(c for c in wanted if c not in result.chunks):
            untried = [i for i in usable if i not in tried[chunk_id]]
            if untried:
                peer = untried[n % len(untried)]
                plan.setdefault(peer, []).append(chunk_id)
                tried[chunk_id].add(peer)
        if not plan:
            break
        answers = await asyncio.gather(
            *(links[i].fetch_chunks(share, ids) for i, ids in plan.items())
        )
        for i, found in zip(plan, answers, strict=True):
            result.chunks.update(found)
            got = sum(len(data) for data in found.values())
            if got:
                device = links[i].peer_device_id
                result.bytes_from[device] = result.bytes_from.get(device, 0) + got
    result.missing = [c for c in wanted if c not in result.chunks]
    return result
