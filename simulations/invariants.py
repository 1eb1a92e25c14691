"""What must hold, checked on the real devices and the real relay.

Continuously (any time, also right after a crash):
- ``no_partial_files``: every file at a real path holds bytes a user wrote (a skipped fsync shows
  as an empty or stale file after the crash);
- ``ledger``: every envelope the relay ever assigned a sequence is still in its log, unchanged;
- ``no_cycles``: every visible entry's parent chain reaches the root.

After heal and quiescence:
- ``same_tree``: every device shows the same tree, and its disk holds exactly that tree's bytes;
- ``no_lost_version``: from the op DAGs, independently of the projection, each version head is
  shown (current or conflicted copy) or was deleted by a delete that saw it;
- ``relay_agrees``: the relay's log is contiguous per device, its vectors match the log, each
  device's own counter, and the updates every device applied;
- ``removed_receive_nothing``: a removed member holds no envelope written at or after the chain
  height of its removal;
- ``removed_hold_no_new_key``: a removed member's devices hold no key of the epoch started after
  the removal (so nothing written under it opens for them, whatever bytes leak).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from crdt.ops import ROOT, TRASH
from crdt.tree import FolderTree
from peer.engine.sync import ShareSync
from peer.fs import MemFileSystem, is_temp_name
from protocol.envelope import Envelope
from simulations.device import SimDevice
from simulations.relayhost import LoggedEnvelope, SimRelay

OWN_DIR = ".drift"


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


@dataclass
class Ledger:
    """Every (device, counter) the relay acknowledged, with the envelope hash it acknowledged."""

    acknowledged: dict[tuple[str, int], bytes] = field(default_factory=dict)

    def record(self, log: Iterable[LoggedEnvelope]) -> list[Violation]:
        out = []
        seen = {}
        for env in log:
            key = (env.device, env.counter)
            seen[key] = env.envelope_hash
            known = self.acknowledged.setdefault(key, env.envelope_hash)
            if known != env.envelope_hash:
                out.append(Violation("ledger", f"envelope {key} changed after it was acknowledged"))
        for key in sorted(set(self.acknowledged) - set(seen)):
            out.append(Violation("ledger", f"acknowledged envelope {key} left the relay's log"))
        return out


def user_tree(fs: MemFileSystem) -> dict[str, bytes | None]:
    """The folder as a user sees it: path → bytes (``None`` for a folder), without our state
    directory and temp files."""
    out: dict[str, bytes | None] = {}
    for path, data in fs.snapshot().items():
        if path == OWN_DIR or path.startswith(OWN_DIR + "/"):
            continue
        if is_temp_name(path.rpartition("/")[2]):
            continue
        out[path] = data if not isinstance(data, str) else data.encode()
    return out


# -- continuous ------------------------------------------------------------------------------------


def no_partial_files(name: str, fs: MemFileSystem, written: set[bytes]) -> list[Violation]:
    out = []
    for path, data in fs.snapshot().items():
        if not isinstance(data, bytes) or is_temp_name(path.rpartition("/")[2]):
            continue
        if path.startswith(OWN_DIR + "/") and not path.startswith(OWN_DIR + "/trash/"):
            continue
        if hashlib.sha256(data).digest() not in written:
            out.append(
                Violation(
                    "no_partial_files", f"{name}: {path!r} holds {len(data)} bytes no user wrote"
                )
            )
    return out


def no_cycles(name: str, tree: FolderTree) -> list[Violation]:
    view = tree.view
    out = []
    reachable = {entry.id for _, entry in tree.walk()}
    for eid, entry in sorted(view.entries.items()):
        if eid == ROOT:
            continue
        steps, cur = 0, entry
        while cur.parent != ROOT:
            steps += 1
            parent = view.entries.get(cur.parent)
            if parent is None or steps > len(view.entries):
                out.append(Violation("no_cycles", f"{name}: entry {eid} never reaches the root"))
                break
            cur = parent
        if eid not in reachable and not out:
            out.append(Violation("no_cycles", f"{name}: entry {eid} is unreachable from the root"))
    return out


# -- after quiescence ------------------------------------------------------------------------------


def disk_not_tree(sync: ShareSync, disk: dict[str, bytes | None]) -> list[str]:
    """Where the disk (``user_tree``) does not hold what the device's tree shows: the paths,
    sorted (sizes per path; a folder is ``None``)."""
    expected: dict[str, int | None] = {}
    for path, entry in sync.tree.walk():
        size = entry.version.size if entry.version is not None else None
        expected[sync.disk_path(path)] = None if entry.is_dir else size
    actual = {p: (None if d is None else len(d)) for p, d in disk.items()}
    return sorted(
        p for p in set(expected) | set(actual) if expected.get(p, -1) != actual.get(p, -1)
    )


def same_tree(devices: list[SimDevice], share: str) -> list[Violation]:
    out = []
    if not devices:
        return out
    first = devices[0]
    first_listing = first.share_sync(share).tree.listing()
    first_disk = user_tree(first.fs)
    for device in devices:
        sync = device.share_sync(share)
        listing = sync.tree.listing()
        if listing != first_listing:
            diff = sorted(set(listing.items()) ^ set(first_listing.items()))[:4]
            out.append(
                Violation("same_tree", f"{device.name}'s tree differs from {first.name}'s: {diff}")
            )
        disk = user_tree(device.fs)
        if disk != first_disk:
            diff_paths = sorted(
                p
                for p in set(disk) | set(first_disk)
                if p not in disk or p not in first_disk or disk[p] != first_disk[p]
            )[:6]
            out.append(
                Violation(
                    "same_tree",
                    f"{device.name}'s disk differs from {first.name}'s at {diff_paths}",
                )
            )
        diff_paths = disk_not_tree(sync, disk)[:6]
        if diff_paths:
            out.append(
                Violation(
                    "same_tree", f"{device.name}'s disk does not match its tree at {diff_paths}"
                )
            )
    return out


def no_lost_version(name: str, tree: FolderTree) -> list[Violation]:
    """Heads from the version DAG (not the projection's index heads) against what is shown."""
    index, view = tree.index, tree.view
    named_as_base: set[str] = set()
    by_node: dict[str, list[str]] = {}
    for vid, version in index.versions.items():
        named_as_base.update(version.base)
        by_node.setdefault(version.node, []).append(vid)
    shown: dict[str, set[bytes]] = {}
    for entry in view.entries.values():
        if entry.version is None:
            continue
        for node in entry.nodes:
            shown.setdefault(node, set()).add(entry.version.manifest)
    deleted_seeing: dict[str, set[str]] = {}
    for move in index.moves.values():
        if move.parent == TRASH:
            deleted_seeing.setdefault(move.node, set()).update(move.seen)
    out = []
    for node in sorted(by_node):
        heads = sorted(v for v in by_node[node] if v not in named_as_base)
        visible = node in view.node_entry
        for head in heads:
            manifest = index.versions[head].manifest
            if visible and manifest in shown.get(node, set()):
                continue
            if not visible and head in deleted_seeing.get(node, set()):
                continue
            where = "shown without it" if visible else "gone, deleted by no op that saw it"
            out.append(Violation("no_lost_version", f"{name}: version {head} of {node} is {where}"))
    return out


def relay_agrees(
    log: list[LoggedEnvelope], vector: dict[str, int], devices: list[SimDevice], share: str
) -> list[Violation]:
    out = []
    counters: dict[str, list[int]] = {}
    for env in log:
        counters.setdefault(env.device, []).append(env.counter)
    for device_id, seen in sorted(counters.items()):
        if sorted(seen) != list(range(1, len(seen) + 1)):
            out.append(Violation("relay_agrees", f"log of device {device_id[:8]} has gaps: {seen}"))
        if vector.get(device_id) != max(seen):
            out.append(
                Violation(
                    "relay_agrees",
                    f"vector says {vector.get(device_id)} for {device_id[:8]}, log {max(seen)}",
                )
            )
    logged = {env.seq for env in log}
    for device in devices:
        sync = device.share_sync(share)
        own = sync.replica.device.device_id.hex()
        mine = int(sync.store.get("counter", 0))
        if vector.get(own, 0) != mine:
            out.append(
                Violation(
                    "relay_agrees",
                    f"{device.name} published up to {mine}, the relay holds {vector.get(own, 0)}",
                )
            )
        # Updates applied from the relay carry its sequence; our own carry none (they are ours).
        applied = {u.relay_seq for u in sync.store.updates() if u.relay_seq is not None}
        own_logged = {env.seq for env in log if env.device == own}
        missing = sorted(logged - applied - own_logged)
        extra = sorted(applied - logged)
        if missing or extra:
            out.append(
                Violation(
                    "relay_agrees",
                    f"{device.name} has not applied log entries {missing[:5]} "
                    f"({len(missing)} in all); applied entries not in the log: {extra[:5]}",
                )
            )
    return out


def removed_receive_nothing(
    device: SimDevice, share: str, removal_height: int, log: list[LoggedEnvelope]
) -> list[Violation]:
    # By envelope hash, not by (device, counter) alone: a device that took back envelopes a
    # removal made invalid seals new ones at the same counters (peer.engine.retract), and the
    # removed device may still hold the old ones it wrote or saw before the removal.
    written = {(env.device, env.counter): env for env in log}
    replica = device.share_sync(share).replica
    own = replica.device.device_id.hex()
    out = []
    for body in replica.envelopes.envelopes_after({}):
        envelope = Envelope.decode(body)
        key = (envelope.header.device.hex(), envelope.header.counter)
        logged = written.get(key)
        if key[0] == own or logged is None or logged.envelope_hash != envelope.envelope_hash:
            continue
        height = logged.height
        if height >= removal_height:
            out.append(
                Violation(
                    "removed_receive_nothing",
                    f"{device.name} (removed at height {removal_height}) holds envelope {key} "
                    f"written at height {height}",
                )
            )
    return out


def removed_hold_no_new_key(device: SimDevice, share: str, rotated_to: int) -> list[Violation]:
    """A removed member's device never holds the key of the epoch started after its removal."""
    held = device.share_sync(share).replica.crypto.ring.latest_epoch
    if held >= rotated_to:
        return [
            Violation(
                "removed_hold_no_new_key",
                f"{device.name} holds the key of epoch {held}, started after its removal",
            )
        ]
    return []


async def check_continuous(
    devices: list[SimDevice], share: str, relay: SimRelay, ledger: Ledger, written: set[bytes]
) -> list[Violation]:
    out = ledger.record(await relay.log(share))
    for device in devices:
        out += no_partial_files(device.name, device.fs, written)
        if device.up and device.node is not None and share in device.node.syncs:
            out += no_cycles(device.name, device.node.syncs[share].tree)
    return out


async def check_final(
    devices: list[SimDevice],
    share: str,
    relay: SimRelay,
    ledger: Ledger,
    written: set[bytes],
    removals: dict[str, int],
    rotations: dict[str, int] | None = None,
) -> list[Violation]:
    """``devices``: every device; ``removals``: removed user → chain height of the removal;
    ``rotations``: removed user → the key epoch started after the removal."""
    log = await relay.log(share)
    out = ledger.record(log)
    members = [d for d in devices if not d.removed]
    for device in devices:
        out += no_partial_files(device.name, device.fs, written)
    for device in members:
        tree = device.share_sync(share).tree
        out += no_cycles(device.name, tree)
        out += no_lost_version(device.name, tree)
    out += same_tree(members, share)
    out += relay_agrees(log, await relay.vector(share), members, share)
    for device in devices:
        if device.removed and device.user in removals:
            out += removed_receive_nothing(device, share, removals[device.user], log)
        if device.removed and rotations and device.user in rotations:
            out += removed_hold_no_new_key(device, share, rotations[device.user])
    return out
