"""Adopting a peer's longer membership chain: only as a verified extension of ours.

The entries a peer sends start at our own head (so a different entry there is seen as the fork it
is) and must verify, from the genesis, as one chain with ours (``protocol.chain.verify_chain``).
Verification runs on a fresh chain, so a bad entry halfway leaves our chain untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from protocol.chain import ChainEntry, MembershipChain, verify_chain
from protocol.errors import Fork, InvalidChain


def check_head(chain: MembershipChain, height: int, head_hash: bytes) -> None:
    """``Fork`` if a peer's head at ``height`` contradicts ours; nothing if it may be ours."""
    if height <= chain.height and chain.hashes[height] != head_hash:
        raise Fork(f"the peer's chain differs at height {height}", height=height)


def extend(chain: MembershipChain, entries: Sequence[ChainEntry]) -> MembershipChain:
    """``chain`` followed by ``entries`` (which start at or below its head), verified as a whole.

    Entries may start below our head: asked when that was our head, they can arrive after
    another peer brought the same entries. Raises ``Fork`` when an entry differs from ours at a
    height we hold, ``InvalidChain`` when the entries leave a gap after our head, and whatever
    ``verify_chain`` raises for a bad entry.
    """
    if not entries or entries[0].height > chain.height:
        raise InvalidChain(
            f"chain entries must start at or below our head (height {chain.height})"
        )
    if any(b.height != a.height + 1 for a, b in itertools.pairwise(entries)):
        raise InvalidChain("chain entries must be consecutive")
    for entry in entries:
        if entry.height <= chain.height and entry.encode() != chain.entries[entry.height].encode():
            raise Fork(f"another entry holds chain height {entry.height}", height=entry.height)
    fresh = [e for e in entries if e.height > chain.height]
    return verify_chain([*chain.entries, *fresh], chain.share_id)
