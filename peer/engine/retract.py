"""Taking back envelopes that a later removal makes invalid.

A removal (a demotion to viewer, a revocation) at chain height *r* with cutoff *C* refuses every
envelope of the device past *C* (docs/protocol.md, *Cutoffs*). A replica cut off from the relay
can have applied such envelopes before it could know of the removal: over the LAN, from a
device of the removed user on the same island (simulation seeds 856, 1129). Once its chain
names the removal they are invalid by the verdict every replica reaches, and so is every
envelope that has seen one: the relay appends an envelope only after everything its seen-vector
names, and it never appends the refused ones. Kept, they would keep this replica's own later
changes from the relay for good. So a replica takes them back once its chain shows the removal:

- which: per device, the envelopes from the first one that the chain refuses, or that has seen a
  counter past a device's last valid counter or an envelope taken back (a device's envelopes
  form a hash chain: all after the first invalid one go too). Envelopes the relay holds are never
  taken back: its log is authoritative, and it judged them by the same chain.
- what: their CRDT updates leave the store and the tree is rebuilt without them; each device's
  tip goes back to the envelope before; ours leave the outbox and our counter goes back, so what
  they held is sealed again on top of the valid state, at the same counters
  (``ShareReplica.drop_lost_lines``, which also takes a fork's losing line back out). The relay
  never held those counters, and a replica that holds the old envelopes takes them back by the
  same verdict before it can apply the new ones (those name the removal's chain height or
  later, so the replica fetches the chain first; and the relay's copy at a counter held here
  takes the other line back out, as for a fork).
- the local index: :mod:`peer.engine.rebase` turns what the user did into local changes again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from peer.engine.rebase import rebase_rows
from protocol.chain import MembershipChain
from protocol.envelope import Envelope, check_envelope_authority
from protocol.errors import Forbidden, PastCutoff, Revoked
from protocol.keys import DeviceCertificate

if TYPE_CHECKING:
    from peer.engine.replica import ShareReplica


@dataclass(frozen=True, slots=True)
class Retraction:
    first: dict[bytes, int]  # device → the first of its counters taken back
    others: int  # envelopes of other devices taken back
    own: int  # our envelopes taken back, their changes to be sealed again
    rows: int  # local index rows made local changes again


def write_limits(
    chain: MembershipChain, certificates: Mapping[bytes, DeviceCertificate]
) -> dict[bytes, int]:
    """Device → the highest counter a valid envelope of it can carry, for the devices whose
    writing the chain ended (removed, demoted or revoked)."""
    limits: dict[bytes, int] = {}
    for device, certificate in certificates.items():
        limit = chain.last_valid_counter(certificate.user_id, device)
        if limit is not None:
            limits[device] = limit
    return limits


def seen_past_limit(seen: Mapping[bytes, int], limits: Mapping[bytes, int]) -> bytes | None:
    """A device whose counter in ``seen`` no valid envelope can carry, if any."""
    for device, counter in seen.items():
        limit = limits.get(device)
        if limit is not None and counter > limit:
            return device
    return None


def first_invalid(
    chain: MembershipChain,
    envelopes: Sequence[Envelope],
    certificates: Mapping[bytes, DeviceCertificate],
    limits: Mapping[bytes, int],
) -> dict[bytes, int]:
    """Device → its first counter among ``envelopes`` that is invalid (see the module docs)."""
    first: dict[bytes, int] = {}
    changed = True
    while changed:  # an envelope taken back can make one seen before it in the list invalid
        changed = False
        for envelope in envelopes:
            header = envelope.header
            if header.counter >= first.get(header.device, math.inf):
                continue
            if _invalid(envelope, chain, certificates, limits, first):
                first[header.device] = header.counter
                changed = True
    return first


def _invalid(
    envelope: Envelope,
    chain: MembershipChain,
    certificates: Mapping[bytes, DeviceCertificate],
    limits: Mapping[bytes, int],
    first: Mapping[bytes, int],
) -> bool:
    seen = envelope.header.seen
    if any(counter >= first.get(device, math.inf) for device, counter in seen.items()):
        return True
    if seen_past_limit(seen, limits) is not None:
        return True
    certificate = certificates.get(envelope.header.device)
    if certificate is None:
        return False
    try:
        check_envelope_authority(envelope, certificate, chain)
    except (PastCutoff, Revoked, Forbidden):
        return True
    return False


def retract_invalid(replica: ShareReplica, disk_path: Callable[[str], str]) -> Retraction | None:
    """Take back what the replica's chain makes invalid; None when nothing is. ``disk_path``
    maps a tree path to the disk (for the local index's rows)."""
    store = replica.store
    own = replica.device.device_id
    certificates = {d: DeviceCertificate.decode(raw) for d, raw in store.certificates().items()}
    certificates[own] = replica.device.certificate
    # Only what the relay does not hold can be invalid: others' envelopes from LAN peers, and
    # ours it has not acknowledged.
    held = [Envelope.decode(body) for _, _, body in replica.envelopes.unrelayed(own, limit=None)]
    held += [Envelope.decode(raw) for _, raw in store.outbox()]
    first = first_invalid(
        replica.chain, held, certificates, write_limits(replica.chain, certificates)
    )
    if not first:
        return None
    old_tree = replica.tree
    try:
        with store.transaction():
            dropped, own_dropped = replica.drop_lost_lines(first)
            rows = rebase_rows(store, old_tree, replica.tree, replica.identity.replica, disk_path)
    except BaseException:
        replica.rebuild_tree()  # the store rolled back: the tree follows it
        raise
    return Retraction(first, dropped - own_dropped, own_dropped, rows)
