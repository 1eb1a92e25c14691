"""A seeded multi-replica simulation of the folder tree and the checks of CRDT.md.

Replicas edit offline from a small colliding name set; updates travel out of order, dropped and
duplicated; then anti-entropy. The checks compare the replicas and the op DAGs, independently of the
projection's own replay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from crdt.errors import LocalOperationError
from crdt.events import Appeared, ChangeEvent, ContentChanged, Disappeared, Moved, Renamed
from crdt.identity import ReplicaIdentity
from crdt.names import name_key
from crdt.ops import ROOT, TRASH
from crdt.persist import load, save
from crdt.rules import DEFAULT_RULES, ProjectionRules
from crdt.tree import FileContent, FolderTree, LocalUpdate
from crdt.view import Entry, EntryKind, VisibleTree

NAMES = ["a", "A", "b", "x.txt", "X.TXT", "\u00e9", "e\u0301", "photos", "Photos", "n.md"]
CONTENTS = [b"\x01", b"\x02", b"\x03"]


def identity(i: int) -> ReplicaIdentity:
    return ReplicaIdentity(bytes([i + 1]) * 32, b"install-%02d......" % i)


Disk = dict[str, tuple[str, bytes | None]]


def _depth(path: str) -> int:
    return path.count("/")


def apply_events(disk: Disk, events: tuple[ChangeEvent, ...] | list[ChangeEvent]) -> None:
    """Apply change events to a path -> (kind, manifest) model as docs/crdt.md tells a peer to.

    Phase 1, deepest old path first: remove what disappeared (nothing may be left under it) and
    detach what moved. Phase 2, shallowest new path first: attach what moved and create what
    appeared (the parent must be a folder, the path free). Phase 3: rewrite changed contents.
    """
    leaving = [e for e in events if isinstance(e, Moved | Renamed | Disappeared)]
    detached: dict[str, Disk] = {}
    for e in sorted(leaving, key=lambda e: -_depth(e.path if isinstance(e, Disappeared)
                                                    else e.old_path)):
        if isinstance(e, Disappeared):
            assert e.path in disk, f"disappeared entry {e.path!r} is not on disk"
            assert not any(p.startswith(e.path + "/") for p in disk), (
                f"{e.path!r} disappeared with something still under it")
            del disk[e.path]
            continue
        assert e.old_path in disk, f"moved entry {e.old_path!r} is not on disk"
        prefix = e.old_path + "/"
        sub = {p: v for p, v in disk.items() if p == e.old_path or p.startswith(prefix)}
        for p in sub:
            del disk[p]
        detached[e.entry_id] = {p[len(e.old_path):]: v for p, v in sub.items()}
    arrivals = [e for e in events if isinstance(e, Moved | Renamed | Appeared)]
    for e in sorted(arrivals, key=lambda e: _depth(e.path)):
        parent = e.path.rpartition("/")[0]
        assert not parent or disk.get(parent, ("", None))[0] == "dir", f"no folder for {e.path!r}"
        assert e.path not in disk, f"{e.path!r} arrives on a taken path"
        if isinstance(e, Appeared):
            disk[e.path] = (e.kind.value, e.version.manifest if e.version else None)
        else:
            for rel, v in detached.pop(e.entry_id).items():
                disk[e.path + rel] = v
    for e in events:
        if isinstance(e, ContentChanged):
            assert e.path in disk, f"changed entry {e.path!r} is not on disk"
            disk[e.path] = (disk[e.path][0], e.version.manifest if e.version else None)


def view_signature(view: VisibleTree) -> tuple[dict[str, Entry], dict[str, dict[str, str]]]:
    """Entries and folder listings: what lookups and walks see."""
    kids = {eid: dict(k) for eid, k in view.kids.items() if k and eid in view.entries}
    return dict(view.entries), kids


@dataclass
class Sim:
    seed: int
    n_replicas: int = 3
    rules: ProjectionRules = DEFAULT_RULES
    check_incremental: bool = True
    drop: float = 0.2
    dup: float = 0.1
    rng: random.Random = field(init=False)
    trees: list[FolderTree] = field(init=False)
    published: list[tuple[int, LocalUpdate]] = field(init=False, default_factory=list)
    now_ms: int = 1_000
    weights: dict[str, int] = field(default_factory=dict)
    check_events: bool = True

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.trees = [FolderTree(identity(i), rules=self.rules) for i in range(self.n_replicas)]
        self.disks: list[Disk] = [{} for _ in self.trees]
        self.by_replica = {t.replica: t.identity for t in self.trees}

    # -- local activity ----------------------------------------------------------------------
    def local_op(self, i: int) -> None:
        tree = self.trees[i]
        rng = self.rng
        self.now_ms += rng.randint(1, 50)
        entries = list(tree.walk())
        dirs = [""] + [p for p, e in entries if e.is_dir]
        files = [p for p, e in entries if not e.is_dir]
        things = [p for p, e in entries if e.kind is not EntryKind.CONFLICTED_COPY]
        copies = [p for p, e in entries if e.kind is EntryKind.CONFLICTED_COPY]
        content = FileContent(rng.choice(CONTENTS), rng.randint(0, 9), self.now_ms)
        weights = {"mkdir": 3, "create": 4, "edit": 4, "rename": 2, "move": 4, "delete": 2,
                   "resolve": 1, "restore": 1}
        if self.weights:
            weights = dict(self.weights)
        kind = rng.choices(list(weights), list(weights.values()))[0]

        def join(d: str, n: str) -> str:
            return f"{d}/{n}" if d else n

        try:
            if kind == "mkdir":
                up = tree.mkdir(join(rng.choice(dirs), rng.choice(NAMES)), now_ms=self.now_ms)
            elif kind == "create":
                up = tree.create_file(join(rng.choice(dirs), rng.choice(NAMES)), content,
                                      now_ms=self.now_ms)
            elif kind == "edit" and files:
                up = tree.edit(rng.choice(files), content, now_ms=self.now_ms)
            elif kind == "rename" and things:
                up = tree.rename(rng.choice(things), rng.choice(NAMES), now_ms=self.now_ms)
            elif kind == "move" and things:
                up = tree.move(rng.choice(things), rng.choice(dirs), now_ms=self.now_ms)
            elif kind == "delete" and entries:
                up = tree.delete(rng.choice([p for p, _ in entries]), now_ms=self.now_ms)
            elif kind == "restore":
                when = rng.randint(1_000, self.now_ms)
                up = tree.restore_folder(rng.choice(dirs), tree.vector_at(when),
                                         now_ms=self.now_ms)
            elif kind == "resolve" and copies:
                up = tree.resolve(rng.choice(copies), keep=rng.choice(["current", "copy"]),
                                  now_ms=self.now_ms)
            else:
                return
        except LocalOperationError:
            return
        self.published.append((i, up))
        self.after_step(tree, up.events)

    # -- delivery ------------------------------------------------------------------------------
    def deliver_random(self, i: int) -> None:
        if not self.published:
            return
        tree = self.trees[i]
        _src, up = self.rng.choice(self.published)
        if up.replica == tree.replica or self.rng.random() < self.drop:
            return
        events: list[ChangeEvent] = []
        for _ in range(2 if self.rng.random() < self.dup else 1):
            result = tree.receive(self.by_replica[up.replica], up.seq, up.seen, up.update)
            events.extend(result.events)
        self.after_step(tree, events)

    def anti_entropy(self) -> None:
        for _round in range(len(self.trees) + 2):
            for a in self.trees:
                for b in self.trees:
                    if a is b:
                        continue
                    for r, s in a.missing_from(b.version_vector()):
                        result = b.receive(self.by_replica[r], s, a.update_seen(r, s),
                                           a.update_bytes(r, s))
                        self.after_step(b, result.events)
            if all(t.version_vector() == self.trees[0].version_vector() for t in self.trees):
                break

    def restart(self, i: int) -> None:
        """Save and reload a replica (warm or cold), as a device restart would."""
        old = self.trees[i]
        data = save(old)
        tree = load(old.identity, data, rules=self.rules, use_projection=self.rng.random() < 0.5)
        assert tree.view.entries == old.view.entries, f"seed={self.seed}: reload changed the tree"
        assert tree.version_vector() == old.version_vector()
        assert tree.pending() == old.pending()
        self.trees[i] = tree

    def after_step(self, tree: FolderTree, events: tuple[ChangeEvent, ...] | list[ChangeEvent]
                   ) -> None:
        if self.check_events:
            disk = self.disks[self.trees.index(tree)]
            try:
                apply_events(disk, events)
            except AssertionError as exc:
                raise AssertionError(f"seed={self.seed}: events do not apply: {exc}") from exc
            assert disk == tree.listing(), f"seed={self.seed}: events missed a change"
        if self.check_incremental:
            full = tree.full_recompute()
            assert view_signature(tree.view) == view_signature(full), (
                f"seed={self.seed}: incremental projection differs from the full recompute")

    def run(self, steps: int = 60, sync_every: int = 25) -> None:
        for step in range(steps):
            i = self.rng.randrange(len(self.trees))
            roll = self.rng.random()
            if roll < 0.02:
                self.restart(i)
            elif roll < 0.55:
                self.local_op(i)
            else:
                self.deliver_random(i)
            if sync_every and step % sync_every == sync_every - 1 and self.rng.random() < 0.5:
                self.anti_entropy()
        self.anti_entropy()


# -- checks (CRDT.md "How it was tested") -----------------------------------------------------
def check_converged(sim: Sim) -> None:
    first = sim.trees[0]
    for t in sim.trees:
        assert not t.pending(), f"seed={sim.seed}: pending updates after anti-entropy"
        assert t.version_vector() == first.version_vector(), f"seed={sim.seed}: vectors differ"
        assert t.listing() == first.listing(), f"seed={sim.seed}: visible trees differ"
        assert t.view.entries == first.view.entries, f"seed={sim.seed}: entries differ"


def check_no_cycles(tree: FolderTree) -> None:
    parent = tree.projection.structure.parent
    for node in parent:
        cur, steps = node, 0
        while cur not in (ROOT, TRASH):
            cur = parent[cur]
            steps += 1
            assert steps <= len(parent), f"node {node} is in a cycle"


def check_unique_names(tree: FolderTree) -> None:
    for eid, e in tree.view.entries.items():
        if not e.is_dir:
            continue
        keys = [name_key(c.name) for c in tree.view.entries.values() if c.parent == eid]
        assert len(keys) == len(set(keys)), f"duplicate names in {tree.view.path_of(eid)!r}"


def complete_delete(tree: FolderTree, node: str) -> bool:
    """A delete of ``node`` that saw every move and every version head of it (from the op DAG)."""
    index = tree.index
    heads = index.version_heads(node)
    moves = [m for m in index.node_moves.get(node, ()) if not index.moves[m].is_delete]
    for did in index.node_deletes.get(node, ()):
        d = index.moves[did]
        anc = index.move_ancestry(did)
        if all(m in anc for m in moves) and heads <= set(d.seen):
            return True
    return False


def check_no_lost_file_no_zombie(tree: FolderTree) -> None:
    for node, create in tree.index.creates.items():
        if create.is_dir:
            continue
        visible = node in tree.view.node_entry
        if complete_delete(tree, node):
            assert not visible, f"zombie: file {node} deleted by a delete that saw all of it"
        else:
            assert visible, f"lost file: {node} ({create.name}) is not visible"


def check_no_lost_version(tree: FolderTree) -> None:
    view = tree.view
    for e in view.entries.values():
        if e.kind is not EntryKind.FILE or e.version is None:
            continue
        shown = {e.version.manifest} | {view.entries[c].version.manifest  # type: ignore[union-attr]
                                        for c in e.copies}
        for node in e.nodes:
            for h in tree.index.version_heads(node):
                assert tree.index.versions[h].manifest in shown, f"lost version {h} of {node}"


def check_all(sim: Sim) -> None:
    check_converged(sim)
    for t in sim.trees:
        check_no_cycles(t)
        check_unique_names(t)
        check_no_lost_file_no_zombie(t)
        check_no_lost_version(t)


def run_seed(seed: int, rules: ProjectionRules = DEFAULT_RULES, steps: int = 60,
             check_incremental: bool = True) -> Sim:
    rng = random.Random(seed)
    sim = Sim(seed, n_replicas=rng.randint(3, 5), rules=rules, check_incremental=check_incremental)
    sim.run(steps=steps)
    return sim
