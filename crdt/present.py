"""Rules 4–5 of the projection: what one folder lists under one name key.

Per file the winning version head is the greatest ``(t, replica, counter)``; the other heads with
other content show as conflicted copies. Names collide after NFC and case folding; same-name
folders merge, same-name files with equal content show once, anything else gets a stable
name-conflict name.
"""

from __future__ import annotations

from collections.abc import Callable

from crdt.entries import Entry, EntryKind
from crdt.index import OpIndex
from crdt.names import conflicted_copy_name, name_conflict_name, name_key
from crdt.ops import VersionOp
from crdt.rules import ProjectionRules
from crdt.structure import Structure


def winner_and_copies(index: OpIndex, nodes: tuple[str, ...],
                      rules: ProjectionRules) -> tuple[VersionOp | None, list[VersionOp]]:
    """Rule 4: the max head wins; other heads with other content become conflicted copies."""
    heads = [index.versions[h] for n in nodes for h in index.version_heads(n)]
    if not heads:
        return None, []
    heads.sort(key=lambda v: v.key)
    winner = heads[-1]
    if not rules.conflicted_copies:
        return winner, []
    shown = {winner.manifest}
    copies = []
    for head in heads[:-1]:
        if head.manifest not in shown:
            shown.add(head.manifest)
            copies.append(head)
    return winner, copies


def _primary_winner(index: OpIndex, node: str) -> VersionOp | None:
    heads = index.version_heads(node)
    return max((index.versions[h] for h in heads), key=lambda v: v.key, default=None)


def kid_key(entry: Entry, rules: ProjectionRules) -> str:
    """The key an entry is listed under in its folder (unique per folder)."""
    key = name_key(entry.name)
    return key if rules.name_collisions else f"{key}\x00{entry.id}"


class _Group:
    __slots__ = ("is_dir", "manifest", "name", "nodes")

    def __init__(self, name: str, is_dir: bool, node: str, manifest: bytes | None) -> None:
        self.name = name
        self.is_dir = is_dir
        self.nodes = [node]
        self.manifest = manifest


def present_bucket(eid: str, folder_nodes: tuple[str, ...], key: str, structure: Structure,
                   index: OpIndex, rules: ProjectionRules) -> tuple[list[Entry], list[str]]:
    """Rule 5 for the children of ``folder_nodes`` whose names share ``key``.

    The earliest created child keeps its name; a later folder merges into it if it is a folder, a
    later file with equal content is shown once with it, anything else gets a name-conflict
    name. Generated names (name conflicts, conflicted copies) avoid every real name key in the
    folder, so each key's listing depends only on its own children. Returns the entries and the
    generated-name keys that were tried (a bucket must be re-presented when one of them appears
    or disappears as a real name).
    """
    named = structure.named
    kids = [c for n in folder_nodes for c in named.get(n, {}).get(key, ())]
    if not kids:
        return [], []
    if len(kids) == 1:
        # The common case, kept cheap: one child under this key and at most one version head.
        c = kids[0]
        if index.is_dir(c):
            return [Entry(c, EntryKind.DIR, eid, structure.name[c], (c,))], []
        heads = index.heads.get(c)
        if not heads or len(heads) == 1:
            version = index.versions[next(iter(heads))] if heads else None
            return [Entry(c, EntryKind.FILE, eid, structure.name[c], (c,), version)], []
    kids.sort(key=lambda c: index.creates[c].key)
    tried: list[str] = []

    def is_real(k: str) -> bool:
        return any(k in named.get(n, ()) for n in folder_nodes)

    def generated(first: str, make: Callable[[int], str]) -> str:
        name, attempt = first, 0
        while True:
            k = name_key(name)
            tried.append(k)
            if not rules.name_collisions or not is_real(k):
                return name
            name = make(attempt)
            attempt += 1

    groups: list[_Group] = []
    for c in kids:
        is_dir = index.is_dir(c)
        manifest = None
        if not is_dir:
            w = _primary_winner(index, c)
            manifest = w.manifest if w is not None else b""
        if groups and rules.name_collisions:
            first = groups[0]
            if (first.is_dir and is_dir) or (not first.is_dir and not is_dir
                                           and first.manifest == manifest):
                first.nodes.append(c)
                continue
            real = structure.name[c]
            name = generated(
                name_conflict_name(real, c, is_dir),
                lambda a, real=real, c=c, d=is_dir: name_conflict_name(real, c, d, a + 1))
        else:
            name = structure.name[c]
        groups.append(_Group(name, is_dir, c, manifest))

    out: list[Entry] = []
    for g in groups:
        nodes = tuple(g.nodes)
        if g.is_dir:
            out.append(Entry(nodes[0], EntryKind.DIR, eid, g.name, nodes))
            continue
        winner, copies = winner_and_copies(index, nodes, rules)
        copy_entries: list[Entry] = []
        for v in copies:
            base = conflicted_copy_name(g.name, v.replica, v.counter)
            name = generated(
                base, lambda a, base=base, v=v: name_conflict_name(base, v.id, False, a))
            copy_entries.append(Entry(f"{v.node}~{v.id}", EntryKind.CONFLICTED_COPY, eid, name,
                                      (v.node,), v, copy_of=nodes[0]))
        out.append(Entry(nodes[0], EntryKind.FILE, eid, g.name, nodes,
                         winner,
                         tuple(e.id for e in copy_entries)))
        out.extend(copy_entries)
    return out, tried
