"""A strict reader and writer for the subset of the Yjs v1 update format this package uses.

pycrdt has no update decoder and no rollback, so every remote update is decoded here first. The only
shape accepted is the one a local operation produces: for each client, a run of Items, each an
insert of a new key into the root map (no left/right origin, parent given by root name, a parent
key, one ``ContentAny`` holding one string), followed by an empty delete set. Anything else — GC or
skip structs, origins, other content types, deletes, trailing bytes, non-minimal integers — is
refused.

Layout (lib0 encoding; varUint = LEB128, string = varUint byte length + UTF-8)::

    update      = varUint(#clients) { client-structs } delete-set
    client-structs = varUint(#structs) varUint(client) varUint(first clock) { item }
    item        = 0x28 varUint(1) string(root name) string(key) varUint(1) 0x77 string(value)
    delete-set  = varUint(0)

0x28 is content ref 8 (Any) with the "has parent sub" bit 0x20; 0x77 is lib0's Any tag for a string.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ITEM_INFO_MAP_ANY = 0x28
ANY_STRING = 0x77
MAX_VAR_UINT = 2**53 - 1


class CodecError(ValueError):
    """The bytes are not an update of the accepted shape (the message says why)."""


@dataclass(frozen=True, slots=True)
class ClientRun:
    client: int
    clock: int
    entries: tuple[tuple[str, str], ...]  # (map key, string value), clock order


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise CodecError("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def var_uint(self) -> int:
        value = 0
        shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if b == 0 and shift:
                    raise CodecError("non-minimal integer")
                break
            shift += 7
            if shift > 56:
                raise CodecError("integer too long")
        if value > MAX_VAR_UINT:
            raise CodecError("integer out of range")
        return value

    def string(self) -> str:
        n = self.var_uint()
        end = self.pos + n
        if end > len(self.data):
            raise CodecError("truncated string")
        raw = self.data[self.pos : end]
        self.pos = end
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError("string is not UTF-8") from None

    def done(self) -> bool:
        return self.pos == len(self.data)


def decode_update(data: bytes, root: str) -> list[ClientRun]:
    """Decode an update that only inserts string values under keys of root map ``root``."""
    r = _Reader(bytes(data))
    n_clients = r.var_uint()
    runs: list[ClientRun] = []
    seen_clients: set[int] = set()
    for _ in range(n_clients):
        n_structs = r.var_uint()
        client = r.var_uint()
        clock = r.var_uint()
        if n_structs == 0:
            raise CodecError("empty struct run")
        if client in seen_clients:
            raise CodecError("client listed twice")
        seen_clients.add(client)
        entries: list[tuple[str, str]] = []
        for _ in range(n_structs):
            info = r.byte()
            if info != ITEM_INFO_MAP_ANY:
                raise CodecError(f"struct kind 0x{info:02x} is not a new map entry")
            if r.var_uint() != 1:
                raise CodecError("item parent is not a root type")
            if r.string() != root:
                raise CodecError("item is not in the share's root map")
            key = r.string()
            if r.var_uint() != 1:
                raise CodecError("item content must hold exactly one value")
            if r.byte() != ANY_STRING:
                raise CodecError("item value is not a string")
            entries.append((key, r.string()))
        runs.append(ClientRun(client, clock, tuple(entries)))
    if r.var_uint() != 0:
        raise CodecError("update carries a delete set")
    if not r.done():
        raise CodecError("trailing bytes after the update")
    return runs


def _var_uint(out: bytearray, value: int) -> None:
    if not 0 <= value <= MAX_VAR_UINT:
        raise ValueError("integer out of range")
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def _string(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    _var_uint(out, len(raw))
    out += raw


def encode_update(runs: Iterable[ClientRun], root: str) -> bytes:
    """The exact bytes Yrs emits for these map inserts (tests check byte equality)."""
    runs = list(runs)
    out = bytearray()
    _var_uint(out, len(runs))
    for run in runs:
        _var_uint(out, len(run.entries))
        _var_uint(out, run.client)
        _var_uint(out, run.clock)
        for key, value in run.entries:
            out.append(ITEM_INFO_MAP_ANY)
            _var_uint(out, 1)
            _string(out, root)
            _string(out, key)
            _var_uint(out, 1)
            out.append(ANY_STRING)
            _string(out, value)
    _var_uint(out, 0)
    return bytes(out)


def encode_state_vector(vector: dict[int, int]) -> bytes:
    out = bytearray()
    items = sorted((c, k) for c, k in vector.items() if k > 0)
    _var_uint(out, len(items))
    for client, clock in items:
        _var_uint(out, client)
        _var_uint(out, clock)
    return bytes(out)


def decode_state_vector(data: bytes) -> dict[int, int]:
    """Decode a Yjs state vector; the encoded form is not canonical, so compare decoded values."""
    r = _Reader(bytes(data))
    out: dict[int, int] = {}
    for _ in range(r.var_uint()):
        client = r.var_uint()
        out[client] = r.var_uint()
    if not r.done():
        raise CodecError("trailing bytes after the state vector")
    return out
