"""The replicated folder tree of one share: local operations, remote updates, the visible tree."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

from crdt import history
from crdt.batch import OpBatch, check_content, split_path
from crdt.errors import (
    AlreadyExists,
    InvalidOperation,
    NotFound,
    UpdateRefused,
)
from crdt.events import events_from_journal
from crdt.gcpause import BULK_OPS, paused_gc
from crdt.identity import ReplicaIdentity
from crdt.index import OpIndex
from crdt.names import name_key
from crdt.ops import TRASH, Op, check_name, encode_op
from crdt.pending import PendingQueue, PendingUpdate
from crdt.projection import Projection, full_projection
from crdt.results import (
    FileContent,
    LocalUpdate,
    NodeHistory,
    ReceiveResult,
    ReceiveStatus,
    Refusal,
)
from crdt.rules import DEFAULT_RULES, ProjectionRules
from crdt.updates import UpdateInfo, UpdateLog, VersionVector, info_for
from crdt.validate import check_seen, validate_update
from crdt.view import ROOT_ENTRY, Entry, EntryKind, VisibleTree
from crdt.ydoc import ROOT_MAP, YDoc
from crdt.yjs_codec import ClientRun, encode_update

BULK_UPDATE_BYTES = 1 << 18



class FolderTree:
    """One share's folder tree over one pycrdt document. Not thread-safe: one owner at a time."""

    def __init__(self, identity: ReplicaIdentity, *,
                 rules: ProjectionRules = DEFAULT_RULES) -> None:
        self.identity = identity
        self.replica = identity.replica
        self.client_id = identity.client_id
        self.rules = rules
        self.doc = YDoc(self.client_id)
        self.index = OpIndex()
        self.log = UpdateLog()
        # Claim our own Yjs client id at once: a remote replica colliding with it is refused.
        self.log.client_owner[self.client_id] = self.replica
        self.projection = Projection(self.index, rules)
        self.held = PendingQueue()

    # -- the visible tree ------------------------------------------------------------------
    @property
    def view(self) -> VisibleTree:
        return self.projection.view

    def lookup(self, path: str) -> Entry | None:
        return self.view.lookup(path)

    def entry(self, entry_id: str) -> Entry | None:
        return self.view.entries.get(entry_id)

    def path_of_node(self, node: str) -> str | None:
        eid = self.view.node_entry.get(node)
        return None if eid is None else self.view.path_of(eid)

    def path_of(self, entry_id: str) -> str:
        return self.view.path_of(entry_id)

    def children(self, path: str = "") -> list[Entry]:
        folder = self._require(path)
        if not folder.is_dir:
            raise InvalidOperation(f"not a folder: {path!r}")
        return self.view.children(folder.id)

    def walk(self) -> Iterator[tuple[str, Entry]]:
        """Every visible entry with its path, parents before children, names sorted."""
        stack = [("", ROOT_ENTRY)]
        while stack:
            prefix, eid = stack.pop()
            for child in reversed(self.view.children(eid)):
                path = f"{prefix}/{child.name}" if prefix else child.name
                yield path, child
                if child.is_dir:
                    stack.append((path, child.id))

    def listing(self) -> dict[str, tuple[str, bytes | None]]:
        """path -> (kind, manifest): a plain comparable picture of the visible tree."""
        return {p: (e.kind.value, e.version.manifest if e.version else None)
                for p, e in self.walk()}

    # -- replication bookkeeping -------------------------------------------------------------
    def version_vector(self) -> VersionVector:
        return self.log.vector()

    def has(self, replica: str, seq: int) -> bool:
        return 1 <= seq <= self.log.have(replica)

    def missing_from(self, vector: VersionVector) -> list[tuple[str, int]]:
        """(replica, seq) this tree has and ``vector`` lacks, in an order that applies cleanly."""
        out = [(u.replica, u.seq) for u in self.log.all() if u.seq > vector.get(u.replica, 0)]
        infos = {(r, s): self.log.get(r, s) for r, s in out}
        return sorted(out, key=lambda k: (infos[k].max_t, k))  # type: ignore[union-attr]

    def update_info(self, replica: str, seq: int) -> UpdateInfo:
        info = self.log.get(replica, seq)
        if info is None:
            raise NotFound(f"update {replica}#{seq}")
        return info

    def update_bytes(self, replica: str, seq: int) -> bytes:
        """The exact bytes of update ``seq`` of ``replica``, rebuilt from the document."""
        info = self.update_info(replica, seq)
        entries = tuple((oid, encode_op(self._op(oid))) for oid in info.op_ids)
        return encode_update([ClientRun(info.client, info.clock, entries)], ROOT_MAP)

    def update_seen(self, replica: str, seq: int) -> VersionVector:
        return self.update_info(replica, seq).seen_vector

    def pending(self) -> list[tuple[str, int]]:
        return self.held.keys()

    def _op(self, oid: str) -> Op:
        op = self.index.get(oid)
        if op is None:
            raise NotFound(oid)
        return op

    # -- document state (for sync with plain Yjs peers and for checks) ------------------------
    def encode_state(self) -> bytes:
        """The whole document as one Yjs update."""
        return self.doc.encode_state()

    def state_vector(self) -> dict[int, int]:
        """The document's Yjs state vector, decoded: Yjs client id -> next clock."""
        return self.doc.state_vector()

    def diff_since(self, state_vector: dict[int, int]) -> bytes:
        """What a document at ``state_vector`` lacks, as one Yjs update."""
        return self.doc.diff_since(state_vector)

    # -- remote updates ----------------------------------------------------------------------
    def receive(self, identity: ReplicaIdentity, seq: int, seen: VersionVector,
                update: bytes) -> ReceiveResult:
        """Validate and apply a remote update, or hold it until its seen updates are applied.

        Raises :class:`UpdateRefused` (document untouched) when it breaks a rule.
        """
        replica = identity.replica
        if type(seq) is not int or seq < 1:
            raise UpdateRefused("update seq must be a positive integer")
        seen = check_seen(seen)
        if seen.get(replica, 0) != seq - 1:
            raise UpdateRefused(f"seen must include the author's own {seq - 1} earlier updates")
        have = self.log.have(replica)
        if seq <= have:
            if self.update_bytes(replica, seq) != bytes(update):
                raise UpdateRefused(f"a different update {replica}#{seq} was already applied")
            return ReceiveResult(ReceiveStatus.DUPLICATE)
        if seq > have + 1 or any(s > self.log.have(r) for r, s in seen.items()):
            if not self.held.hold(PendingUpdate(identity, seq, seen, bytes(update))):
                raise UpdateRefused("too many updates are waiting for their causal past")
            return ReceiveResult(ReceiveStatus.PENDING)
        if len(update) < BULK_UPDATE_BYTES:
            journal = self._apply_remote(identity, seq, seen, bytes(update))
        else:
            with paused_gc():
                journal = self._apply_remote(identity, seq, seen, bytes(update))
        applied = [(replica, seq)]
        refused: list[Refusal] = []
        self.held.discard(replica, seq)
        while (p := self.held.take_ready(self.log.have)) is not None:
            try:
                more = self._apply_remote(p.identity, p.seq, p.seen, p.update)
            except UpdateRefused as exc:
                refused.append(Refusal(p.identity.replica, p.seq, exc.reason))
                continue
            for k, v in more.items():
                journal.setdefault(k, v)
            applied.append((p.identity.replica, p.seq))
        events = tuple(events_from_journal(self.view, journal))
        return ReceiveResult(ReceiveStatus.APPLIED, tuple(applied), events, tuple(refused))

    def _apply_remote(self, identity: ReplicaIdentity, seq: int, seen: VersionVector,
                      update: bytes) -> dict[str, Entry | None]:
        replica = identity.replica
        client = identity.client_id
        ops = validate_update(replica=replica, client_id=client, seq=seq, seen=seen,
                              update=update, index=self.index, log=self.log)
        clock = self.log.next_clock(replica)
        self.doc.apply(update)
        return self._fold(info_for(replica, seq, client, clock, ops, seen), ops)

    def _fold(self, info: UpdateInfo, ops: list[Op]) -> dict[str, Entry | None]:
        self.log.record(info)
        if len(ops) < BULK_OPS:
            self.index.add_all(ops)
            return self.projection.apply(ops)
        with paused_gc():
            self.index.add_all(ops)
            return self.projection.apply(ops)

    # -- local operations ------------------------------------------------------------------
    def _require(self, path: str) -> Entry:
        entry = self.view.lookup(path)
        if entry is None:
            raise NotFound(path)
        return entry

    def _require_item(self, path: str) -> Entry:
        entry = self._require(path)
        if entry.id == ROOT_ENTRY:
            raise InvalidOperation("the share's root folder cannot be changed")
        return entry

    def _folder(self, path: str) -> Entry:
        entry = self._require(path)
        if not entry.is_dir:
            raise InvalidOperation(f"not a folder: {path!r}")
        return entry

    def _free(self, folder: Entry, name: str, path: str, allow: str | None = None) -> None:
        taken = self.view.kids.get(folder.id, {}).get(name_key(check_name(name)))
        if taken is not None and taken != allow:
            raise AlreadyExists(path)

    def _batch(self, now_ms: int) -> OpBatch:
        return OpBatch(self.replica, self.log.next_counter(self.replica), self.index.max_t + 1,
                       self.index, now_ms)

    def _commit(self, batch: OpBatch) -> LocalUpdate:
        if not batch.ops:
            raise InvalidOperation("nothing to change")
        seen = self.log.vector()
        seq = self.log.have(self.replica) + 1
        clock = self.log.next_clock(self.replica)
        update = self.doc.insert([(op.id, encode_op(op)) for op in batch.ops])
        journal = self._fold(info_for(self.replica, seq, self.client_id, clock, batch.ops, seen),
                             batch.ops)
        return LocalUpdate(self.replica, seq, update, seen,
                           tuple(events_from_journal(self.view, journal)))

    def mkdir(self, path: str, *, now_ms: int) -> LocalUpdate:
        parent_path, name = split_path(path)
        folder = self._folder(parent_path)
        self._free(folder, name, path)
        batch = self._batch(now_ms)
        batch.move(None, folder.nodes[0], name, is_dir=True)
        return self._commit(batch)

    def create_file(self, path: str, content: FileContent, *, now_ms: int) -> LocalUpdate:
        check_content(content)
        parent_path, name = split_path(path)
        folder = self._folder(parent_path)
        self._free(folder, name, path)
        batch = self._batch(now_ms)
        node = batch.move(None, folder.nodes[0], name, is_dir=False)
        batch.version(node, content, ())
        return self._commit(batch)

    def import_tree(self, items: Iterable[tuple[str, FileContent | None]], *,
                    now_ms: int) -> LocalUpdate:
        """Create many folders (content None) and files in one update, e.g. after a first scan.

        Missing parent folders are created; existing folders are reused; a name that is taken
        raises :class:`AlreadyExists` and nothing is written.
        """
        with paused_gc():
            return self._import_tree(items, now_ms)

    def _import_tree(self, items: Iterable[tuple[str, FileContent | None]],
                     now_ms: int) -> LocalUpdate:
        batch = self._batch(now_ms)
        made: dict[str, tuple[str, dict[str, str]]] = {}  # folder path -> (node, key -> kind)

        def folder(path: str) -> str:
            if path in made:
                return made[path][0]
            entry = self.view.lookup(path)
            if entry is not None:
                if not entry.is_dir:
                    raise InvalidOperation(f"not a folder: {path!r}")
                made[path] = (entry.nodes[0], {})
                return entry.nodes[0]
            parent_path, name = split_path(path)
            node = add(parent_path, name, None)
            made[path] = (node, {})
            return node

        def add(parent_path: str, name: str, content: FileContent | None) -> str:
            parent = folder(parent_path)
            key = name_key(check_name(name))
            siblings = made[parent_path][1]
            existing = self.view.lookup(parent_path)
            full = f"{parent_path}/{name}" if parent_path else name
            if key in siblings or (existing is not None and existing.is_dir and key in
                                   self.view.kids.get(existing.id, {})):
                raise AlreadyExists(full)
            siblings[key] = "dir" if content is None else "file"
            node = batch.move(None, parent, name, is_dir=content is None)
            if content is not None:
                check_content(content)
                batch.version(node, content, ())
            return node

        for path, content in items:
            parent_path, name = split_path(path)
            if content is None:
                norm = f"{parent_path}/{name}" if parent_path else name
                if norm not in made and self.view.lookup(norm) is None:
                    made[norm] = (add(parent_path, name, None), {})
            else:
                add(parent_path, name, content)
        return self._commit(batch)

    def edit(self, path: str, content: FileContent, *, now_ms: int) -> LocalUpdate:
        """A new version of a file. Editing a conflicted copy turns it into a file of its own."""
        check_content(content)
        entry = self._require_item(path)
        if entry.is_dir:
            raise InvalidOperation(f"a folder has no content: {path!r}")
        batch = self._batch(now_ms)
        if entry.kind is EntryKind.CONFLICTED_COPY:
            self._resolve_into(batch, entry, keep_copy=False)
            node = batch.move(None, self._entry(entry.parent).nodes[0], entry.name, is_dir=False)
            batch.version(node, content, ())
        else:
            for node in entry.nodes:
                batch.version(node, content, (self._max_head(node),))
        return self._commit(batch)

    def rename(self, path: str, new_name: str, *, now_ms: int) -> LocalUpdate:
        parent_path, _ = split_path(path)
        return self.move(path, parent_path, now_ms=now_ms, new_name=new_name)

    def rename_many(self, renames: Iterable[tuple[str, str]], *, now_ms: int) -> LocalUpdate:
        """Rename many entries (path, new name) in one update; all or nothing."""
        batch = self._batch(now_ms)
        claimed: dict[tuple[str, str], str] = {}
        for path, new_name in renames:
            entry = self._require_item(path)
            if entry.kind is EntryKind.CONFLICTED_COPY:
                raise InvalidOperation("resolve or edit a conflicted copy before renaming it")
            folder = self._entry(entry.parent)
            parent_path, _ = split_path(path)
            dest = f"{parent_path}/{new_name}" if parent_path else new_name
            self._free(folder, new_name, dest, allow=entry.id)
            if claimed.setdefault((folder.id, name_key(new_name)), entry.id) != entry.id:
                raise AlreadyExists(dest)
            for node in entry.nodes:
                batch.move(node, self.projection.structure.parent[node], new_name)
        return self._commit(batch)

    def move(self, path: str, new_parent: str, *, now_ms: int,
             new_name: str | None = None) -> LocalUpdate:
        entry = self._require(path)
        if entry.kind is EntryKind.CONFLICTED_COPY:
            raise InvalidOperation("resolve or edit a conflicted copy before moving it")
        target = self._folder(new_parent)
        name = entry.name if new_name is None else new_name
        cur = target.id
        while cur != ROOT_ENTRY:
            if cur == entry.id:
                raise InvalidOperation(f"cannot move {path!r} into itself")
            cur = self.view.entries[cur].parent
        dest = f"{new_parent}/{name}" if new_parent.strip("/") else name
        self._free(target, name, dest, allow=entry.id)
        batch = self._batch(now_ms)
        for node in entry.nodes:
            batch.move(node, target.nodes[0], name)
        return self._commit(batch)

    def delete(self, path: str, *, now_ms: int) -> LocalUpdate:
        """Recursive delete: one delete per visible node; deleting a conflicted copy resolves it."""
        entry = self._require_item(path)
        batch = self._batch(now_ms)
        if entry.kind is EntryKind.CONFLICTED_COPY:
            self._resolve_into(batch, entry, keep_copy=False)
            return self._commit(batch)
        stack = [entry]
        nodes: list[str] = []
        while stack:
            e = stack.pop()
            if e.kind is EntryKind.CONFLICTED_COPY:
                continue
            nodes.extend(e.nodes)
            if e.is_dir:
                stack.extend(self.view.entries[c] for c in self.view.kids.get(e.id, {}).values())
        for node in sorted(nodes, key=lambda n: -self._depth(n)):
            batch.move(node, TRASH, self.projection.structure.name[node],
                       seen=tuple(sorted(self.index.version_heads(node))))
        return self._commit(batch)

    def resolve(self, path: str, *, keep: Literal["current", "copy"], now_ms: int) -> LocalUpdate:
        """Settle a conflicted copy: keep the current content or make the copy's current."""
        entry = self._require_item(path)
        if entry.kind is not EntryKind.CONFLICTED_COPY:
            raise InvalidOperation(f"not a conflicted copy: {path!r}")
        batch = self._batch(now_ms)
        self._resolve_into(batch, entry, keep_copy=keep == "copy")
        return self._commit(batch)

    def _resolve_into(self, batch: OpBatch, copy: Entry, *, keep_copy: bool) -> None:
        if copy.version is None or copy.copy_of is None:
            raise InvalidOperation(f"not a conflicted copy: {copy.name!r}")
        node = copy.nodes[0]
        owner = self._entry(copy.copy_of)
        assert owner.version is not None
        chosen = copy.version if keep_copy else owner.version
        # Merge every head of this node showing the copy's content, plus the node's winner.
        base = {self._max_head(node)}
        base.update(h for h in self.index.version_heads(node)
                    if self.index.versions[h].manifest == copy.version.manifest)
        batch.version(node, FileContent(chosen.manifest, chosen.size, chosen.mtime_ms,
                                              chosen.executable),
                      tuple(base))

    def _entry(self, eid: str) -> Entry:
        return self.view.entries[eid]

    def _max_head(self, node: str) -> str:
        return max(self.index.version_heads(node), key=lambda h: self.index.versions[h].key)

    def _depth(self, node: str) -> int:
        parent = self.projection.structure.parent
        depth = 0
        cur = node
        while cur in parent and depth <= len(parent):
            cur = parent[cur]
            depth += 1
        return depth

    # -- history and earlier points --------------------------------------------------------
    def history(self, node: str) -> NodeHistory:
        """Every move and version of ``node``, oldest first."""
        return history.node_history(self.index, node)

    def closed_vector(self, vector: VersionVector) -> VersionVector:
        """The largest causally closed set of applied updates within ``vector``."""
        return history.closed_vector(self.log, vector)

    def vector_at(self, time_ms: int) -> VersionVector:
        """The updates written at or before ``time_ms`` (authors' clocks), causally closed."""
        return history.vector_at(self.log, time_ms)

    def as_of(self, vector: VersionVector) -> VisibleTree:
        """The visible tree as it was when exactly the updates in ``vector`` were applied."""
        return history.tree_as_of(self.index, self.log, self.rules, vector)

    def restore_folder(self, path: str, as_of: VersionVector, *, now_ms: int) -> LocalUpdate:
        """Bring a folder back to how it was at ``as_of`` (a vector; see :meth:`vector_at`).

        Files that existed then get their old content back (a new version, so nothing is lost),
        deleted ones and missing folders are re-created at their old paths. Files added since are
        left alone. A path now taken by something of the other kind gets a ``(restored)`` name.
        """
        batch = self._batch(now_ms)
        history.restore_into(batch, self.view, self.as_of(as_of), path, self._max_head)
        return self._commit(batch)

    def full_recompute(self) -> VisibleTree:
        """The oracle: the projection recomputed from scratch from the op set."""
        return full_projection(self.index, self.rules)[2]


__all__ = ["FileContent", "FolderTree", "LocalUpdate", "NodeHistory", "ReceiveResult",
           "ReceiveStatus", "Refusal"]
