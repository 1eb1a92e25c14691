"""The one place that touches pycrdt; it wraps the traps of pycrdt 0.14.13.

- ``PanicException`` derives from ``BaseException``: every call into Yrs that takes outside bytes
  catches it and raises :class:`~crdt.errors.DocumentError` instead.
- Values are only ever strings (op records as JSON text), so the "ints come back as floats" trap and
  map-key ordering never reach the model; keys are always sorted by the caller.
- Encoded state vectors are not canonical bytes: they are decoded before use.
- A ``Doc`` belongs to one owner (thread or event loop) at a time; this class is not thread-safe and
  callers must keep it on one task.
- GC stays on for the live document (nothing is ever deleted, so it never runs anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pycrdt

from crdt.errors import DocumentError
from crdt.yjs_codec import (
    ClientRun,
    CodecError,
    decode_state_vector,
    decode_update,
    encode_state_vector,
)

ROOT_MAP = "ops"


class YDoc:
    """A pycrdt document holding one root map of op id -> record text.

    Given a saved ``state``, the pycrdt document is built on first use, not at load: reading the
    tree needs only the op index and the projection, so a restart shows the tree sooner. ``check``
    then runs once on the built document and may refuse it.
    """

    def __init__(self, client_id: int, state: bytes | None = None,
                 check: Callable[[YDoc], None] | None = None) -> None:
        self.client_id = client_id
        self._state = state
        self._check = check
        self._pdoc: pycrdt.Doc | None = None
        self._pmap: pycrdt.Map | None = None

    def _built(self) -> tuple[pycrdt.Doc, pycrdt.Map]:
        if self._pdoc is None or self._pmap is None:
            doc = pycrdt.Doc(client_id=self.client_id)
            self._pdoc, self._pmap = doc, doc.get(ROOT_MAP, type=pycrdt.Map)
            state, check = self._state, self._check
            if state is not None:
                self._state = self._check = None
                try:
                    self.apply(state)
                    if check is not None:
                        check(self)
                except BaseException:
                    # Stay unbuilt, so every later use refuses the same way.
                    self._pdoc = self._pmap = None
                    self._state, self._check = state, check
                    raise
        return self._pdoc, self._pmap

    def insert(self, entries: list[tuple[str, str]]) -> bytes:
        """Insert new keys in one transaction and return that transaction's update bytes."""
        doc, root = self._built()
        before = doc.get_state()
        try:
            with doc.transaction():
                for key, value in entries:
                    root[key] = value
        except BaseException as exc:  # PanicException is a BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise DocumentError(f"pycrdt refused a local insert: {exc}") from None
        return doc.get_update(before)

    def apply(self, update: bytes) -> None:
        doc, _root = self._built()
        try:
            doc.apply_update(update)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise DocumentError(f"pycrdt could not apply an update: {exc}") from None

    def state_vector(self) -> dict[int, int]:
        """Yjs client id -> next clock, decoded (encoded vectors differ between replicas)."""
        return decode_state_vector(self._built()[0].get_state())

    def encode_state(self) -> bytes:
        return self._built()[0].get_update()

    def diff_since(self, vector: dict[int, int]) -> bytes:
        return self._built()[0].get_update(encode_state_vector(vector))

    def runs(self) -> list[ClientRun]:
        """Every entry of the document, decoded from its own full-state update."""
        try:
            return decode_update(self.encode_state(), ROOT_MAP)
        except CodecError as exc:
            raise DocumentError(f"document holds something other than op records: {exc}") from None

    def entries(self) -> Iterator[tuple[str, str]]:
        for run in self.runs():
            yield from run.entries

    def __len__(self) -> int:
        return len(self._built()[1])
