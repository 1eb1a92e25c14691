"""Strict, canonical msgpack: schemas for records and a decoder that refuses anything else.

Every record on the wire is a msgpack map whose keys are the record's field names, in the order the
schema lists them, each value in its shortest msgpack form (what ``msgpack.packb`` produces with
``use_bin_type=True``). Decoding checks the size limit, refuses extension types, floats, trailing
bytes and nesting deeper than ``MAX_DEPTH``, checks every field against the schema (no missing, no
unknown, no wrong type, no value out of range) and finally that re-encoding gives the very bytes it
was given: so a signature or a hash over a record's bytes means one thing only.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Self, cast

import msgpack

from protocol.errors import DecodeError, EncodeError

MAX_DEPTH = 16
"""Deepest nesting of arrays and maps any message may have."""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024 + 64 * 1024
"""Largest encoded message (a 16 MiB block plus its framing fields)."""

U64_MAX = 2**64 - 1


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError("wrong_type", f"msgpack extension type {code} is not used by driftsync")


def unpack(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Decode one msgpack value, refusing everything our records never contain."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("wrong_type", f"expected bytes to decode, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DecodeError(
            "too_large", f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes"
        )
    if len(data) == 0:
        raise DecodeError("truncated", "empty input where a message was expected")
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=True, ext_hook=_refuse_ext, use_list=True
        )
    except DecodeError:
        raise
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing_bytes", "bytes follow the end of the message") from exc
    except msgpack.StackError as exc:
        raise DecodeError("too_deep", "msgpack nesting too deep") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError("malformed", "a string is not valid UTF-8") from exc
    except ValueError as exc:
        # msgpack bounds each header by the input size: "exceeds max_*_len" means a header
        # announces more than the bytes that follow can hold, i.e. the input is cut short.
        if "incomplete" in str(exc) or "exceeds max_" in str(exc):
            raise DecodeError("truncated", "the message ends before it is complete") from exc
        raise DecodeError("malformed", f"not valid msgpack: {exc}") from exc
    except Exception as exc:  # msgpack raises assorted types on hostile input
        raise DecodeError("malformed", f"not valid msgpack: {exc}") from exc
    _check_depth(obj)
    return obj


def _check_depth(obj: Any) -> None:
    # Level by level, containers only: a long array of scalars costs one pass, no bookkeeping.
    level = [obj] if type(obj) in _CONTAINERS else []
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise DecodeError("too_deep", f"nesting deeper than {MAX_DEPTH} levels")
        deeper: list[Any] = []
        for value in level:
            children: Iterable[Any] = value.values() if type(value) is dict else value
            deeper += [child for child in children if type(child) in _CONTAINERS]
        level = deeper
        depth += 1


_CONTAINERS = (list, dict)  # all unpack makes (use_list=True; no subclasses)


def pack(obj: Any) -> bytes:
    """Encode a plain value (already checked by a schema) in canonical form."""
    return msgpack.packb(obj, use_bin_type=True)


# --- field kinds ------------------------------------------------------------------------------


class Kind:
    """One field's rule: ``check`` returns the Python value or raises ``DecodeError``."""

    def check(self, value: Any, where: str) -> Any:
        raise DecodeError("malformed", f"{where}: no rule")  # overridden by every kind

    def to_wire(self, value: Any) -> Any:
        return value

    def unchecked_wire(self, value: Any) -> Any:
        """``to_wire`` without checking records nested inside (their caller checks them)."""
        return self.to_wire(value)

    def describe(self) -> str:
        return type(self).__name__.lower()


def _wrong_type(where: str, expected: str, value: Any) -> DecodeError:
    return DecodeError("wrong_type", f"{where}: expected {expected}, got {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class Bin(Kind):
    """Bytes with a length range (``Bin.exact(n)`` for exactly ``n`` bytes)."""

    max_len: int
    min_len: int = 0

    @classmethod
    def exact(cls, size: int) -> Bin:
        return cls(max_len=size, min_len=size)

    def check(self, value: Any, where: str) -> bytes:
        if not isinstance(value, bytes):
            raise _wrong_type(where, "bytes", value)
        if not self.min_len <= len(value) <= self.max_len:
            expected = (
                f"exactly {self.min_len}"
                if self.min_len == self.max_len
                else f"{self.min_len}..{self.max_len}"
            )
            raise DecodeError(
                "out_of_range" if len(value) < self.max_len else "too_large",
                f"{where}: {len(value)} bytes, expected {expected}",
            )
        return value

    def describe(self) -> str:
        if self.min_len == self.max_len:
            return f"bin[{self.max_len}]"
        return f"bin[{self.min_len}..{self.max_len}]"


@dataclasses.dataclass(frozen=True)
class UInt(Kind):
    max_value: int = U64_MAX
    min_value: int = 0

    def check(self, value: Any, where: str) -> int:
        if type(value) is not int:  # bool is an int subclass; refuse it
            raise _wrong_type(where, "integer", value)
        if not self.min_value <= value <= self.max_value:
            raise DecodeError(
                "out_of_range", f"{where}: {value} not in {self.min_value}..{self.max_value}"
            )
        return value

    def describe(self) -> str:
        if self.max_value == U64_MAX:
            return "uint" if self.min_value == 0 else f"uint ≥ {self.min_value}"
        return f"uint {self.min_value}..{self.max_value}"


@dataclasses.dataclass(frozen=True)
class Text(Kind):
    max_len: int
    min_len: int = 0

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise _wrong_type(where, "string", value)
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise DecodeError("malformed", f"{where}: text is not valid UTF-8") from exc
        if not self.min_len <= size <= self.max_len:
            raise DecodeError(
                "out_of_range",
                f"{where}: {size} bytes of text, expected {self.min_len}..{self.max_len}",
            )
        return value

    def describe(self) -> str:
        return f"str[{self.min_len}..{self.max_len} bytes]"


@dataclasses.dataclass(frozen=True)
class IntOrText(Kind):
    """An integer or a short string (error details)."""

    max_len: int

    def check(self, value: Any, where: str) -> int | str:
        if type(value) is int:
            if not -(2**63) <= value <= U64_MAX:
                raise DecodeError("out_of_range", f"{where}: {value} does not fit msgpack")
            return value
        return Text(self.max_len).check(value, where)

    def describe(self) -> str:
        return f"int or str[..{self.max_len} bytes]"


@dataclasses.dataclass(frozen=True)
class OneOf(Kind):
    """A string from a fixed set (roles, entry kinds)."""

    values: tuple[str, ...]

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise _wrong_type(where, "string", value)
        if value not in self.values:
            raise DecodeError("out_of_range", f"{where}: {value!r} is not one of {self.values}")
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(f'"{v}"' for v in self.values)


@dataclasses.dataclass(frozen=True)
class Flag(Kind):
    def describe(self) -> str:
        return "bool"

    def check(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise _wrong_type(where, "boolean", value)
        return value


@dataclasses.dataclass(frozen=True)
class Maybe(Kind):
    """A field that may be nil."""

    inner: Kind

    def check(self, value: Any, where: str) -> Any:
        return None if value is None else self.inner.check(value, where)

    def to_wire(self, value: Any) -> Any:
        return None if value is None else self.inner.to_wire(value)

    def unchecked_wire(self, value: Any) -> Any:
        return None if value is None else self.inner.unchecked_wire(value)

    def describe(self) -> str:
        return f"nil or {self.inner.describe()}"


@dataclasses.dataclass(frozen=True)
class Seq(Kind):
    """An array of one kind, stored as a tuple; ``ordered`` demands strictly ascending items."""

    item: Kind
    max_items: int
    ordered: bool = False

    def check(self, value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _wrong_type(where, "array", value)
        if len(value) > self.max_items:
            raise DecodeError(
                "too_large", f"{where}: {len(value)} items, at most {self.max_items} allowed"
            )
        try:
            items = tuple([self.item.check(v, where) for v in value])
        except DecodeError:
            # Spell out which item failed only now, not for every item that passes.
            for i, v in enumerate(value):
                self.item.check(v, f"{where}[{i}]")
            raise
        if self.ordered and any(a >= b for a, b in itertools.pairwise(items)):
            raise DecodeError("not_canonical", f"{where}: items must be sorted and unique")
        return items

    def to_wire(self, value: Any) -> Any:
        if _plain(self.item):
            return list(value)
        return [self.item.to_wire(v) for v in value]

    def unchecked_wire(self, value: Any) -> Any:
        if _plain(self.item):
            return list(value)
        return [self.item.unchecked_wire(v) for v in value]

    def describe(self) -> str:
        order = ", sorted unique" if self.ordered else ""
        return f"array[..{self.max_items}{order}] of {self.item.describe()}"


@dataclasses.dataclass(frozen=True)
class Pair(Kind):
    """A two-element array (used for compact maps such as version vectors)."""

    first: Kind
    second: Kind

    def check(self, value: Any, where: str) -> tuple[Any, Any]:
        if not isinstance(value, list | tuple):
            raise _wrong_type(where, "array of 2", value)
        if len(value) != 2:
            raise DecodeError("malformed", f"{where}: expected 2 items, got {len(value)}")
        return (
            self.first.check(value[0], f"{where}[0]"),
            self.second.check(value[1], f"{where}[1]"),
        )

    def to_wire(self, value: Any) -> Any:
        if _plain(self.first) and _plain(self.second):
            return [value[0], value[1]]
        return [self.first.to_wire(value[0]), self.second.to_wire(value[1])]

    def unchecked_wire(self, value: Any) -> Any:
        if _plain(self.first) and _plain(self.second):
            return [value[0], value[1]]
        return [self.first.unchecked_wire(value[0]), self.second.unchecked_wire(value[1])]

    def describe(self) -> str:
        return f"[{self.first.describe()}, {self.second.describe()}]"


@dataclasses.dataclass(frozen=True)
class Converted(Kind):
    """A wire form checked by ``inner`` and turned into a richer Python value (and back)."""

    inner: Kind
    load: Callable[[Any], Any]
    dump: Callable[[Any], Any]
    name: str

    def check(self, value: Any, where: str) -> Any:
        return self.load(self.inner.check(value, where))

    def to_wire(self, value: Any) -> Any:
        return self.inner.to_wire(self.dump(value))

    def unchecked_wire(self, value: Any) -> Any:
        return self.inner.unchecked_wire(self.dump(value))

    def describe(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Nested(Kind):
    """A record inside a record."""

    record: type[Record]

    def check(self, value: Any, where: str) -> Any:
        return self.record.from_wire(value, where)

    def to_wire(self, value: Any) -> Any:
        return value.to_wire()

    def unchecked_wire(self, value: Any) -> Any:
        if not isinstance(value, self.record):
            raise TypeError(f"expected a {self.record.__name__}, got {type(value).__name__}")
        return value.unchecked_wire()

    def describe(self) -> str:
        return self.record.__name__


# --- records ----------------------------------------------------------------------------------


class Record:
    """Base for frozen dataclasses with a ``SCHEMA``: strict canonical encode/decode.

    Subclasses list ``SCHEMA = (("field", Kind), ...)`` in wire order; the dataclass fields have the
    same names. ``MAX_BYTES`` bounds the encoded size of a standalone record.
    """

    SCHEMA: ClassVar[tuple[tuple[str, Kind], ...]] = ()
    MAX_BYTES: ClassVar[int] = MAX_MESSAGE_BYTES
    # Public records that arrive again and again set this: ``decode`` then remembers them (never
    # a record holding a secret: key files and key bundles keep the default).
    DECODE_MEMO: ClassVar[bool] = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, kind, plain in _plan(type(self)):
            try:
                # Records nested in this field are checked once, by ``kind.check``.
                value = getattr(self, name)
                wire = value if plain else kind.unchecked_wire(value)
                kind.check(wire, f"{type(self).__name__}.{name}")
            except DecodeError as exc:
                raise EncodeError(f"cannot encode {exc.message}", reason=exc.reason) from exc
            except (TypeError, AttributeError, IndexError) as exc:
                raise EncodeError(
                    f"cannot encode {type(self).__name__}.{name}: {exc}", reason="wrong_type"
                ) from exc
            out[name] = wire
        return out

    def unchecked_wire(self) -> dict[str, Any]:
        """The wire form of a record known to be valid (one just decoded): no checks."""
        return {
            name: getattr(self, name) if plain else kind.unchecked_wire(getattr(self, name))
            for name, kind, plain in _plan(type(self))
        }

    @classmethod
    def from_wire(cls, obj: Any, where: str | None = None) -> Self:
        where = where or cls.__name__
        if not isinstance(obj, dict):
            raise _wrong_type(where, "map", obj)
        names = _field_names(cls)
        for key in obj:
            if key not in names:
                raise DecodeError("unknown_field", f"{where}: unknown field {key!r}")
        values: dict[str, Any] = {}
        for name, kind in cls.SCHEMA:
            if name not in obj:
                raise DecodeError("missing_field", f"{where}: missing field {name!r}")
            values[name] = kind.check(obj[name], f"{where}.{name}")
        return cls(**values)

    def encode(self) -> bytes:
        data = pack(self.to_wire())
        if len(data) > self.MAX_BYTES:
            raise EncodeError(
                f"{type(self).__name__} of {len(data)} bytes exceeds {self.MAX_BYTES} bytes",
                reason="too_large",
            )
        return data

    @classmethod
    def decode(cls, data: bytes) -> Self:
        data = bytes(data)
        memo = cls.DECODE_MEMO and len(data) <= DECODED_MEMO_MAX_BYTES
        if memo:
            known = _decoded.get((cls, data))
            if known is not None:
                return cast(Self, known)
        record = cls.from_wire(unpack(data, max_bytes=cls.MAX_BYTES))
        # Every field passed its check just now: re-encoding needs no second round of checks.
        if pack(record.unchecked_wire()) != data:
            raise DecodeError(
                "not_canonical", f"{cls.__name__}: not in canonical form (field order or encoding)"
            )
        if memo:
            if len(_decoded) >= DECODED_MEMO_ENTRIES:
                del _decoded[next(iter(_decoded))]
            _decoded[(cls, data)] = record
        return record


DECODED_MEMO_ENTRIES = 2048
DECODED_MEMO_MAX_BYTES = 16 * 1024
_decoded: dict[tuple[type[Record], bytes], Record] = {}
"""Small public records (``DECODE_MEMO``) decoded lately, by type and exact bytes, oldest first.
Records are immutable and decoding is a pure function of the bytes, so the same envelope or
certificate arriving again (from the relay and from LAN peers; in every payload that names its
author) is decoded once. Failures are never kept: bad bytes are refused every time."""


@functools.cache
def _field_names(record: type[Record]) -> frozenset[str]:
    return frozenset(name for name, _ in record.SCHEMA)


@functools.cache
def _plan(record: type[Record]) -> tuple[tuple[str, Kind, bool], ...]:
    """Each field with its kind, and whether its wire form is its value (see ``_plain``)."""
    return tuple((name, kind, _plain(kind)) for name, kind in record.SCHEMA)


def _plain(kind: Kind) -> bool:
    """Whether ``kind``'s wire form is the value itself (bytes, ints, strings, flags): most
    fields of every record, so encoding skips two calls per such field and item."""
    return _plain_type(type(kind))


@functools.cache
def _plain_type(kind: type[Kind]) -> bool:
    return kind.to_wire is Kind.to_wire and kind.unchecked_wire is Kind.unchecked_wire


def schema_table(record: type[Record], type_name: str | None = None) -> str:
    """A markdown table of a record's wire fields, as docs/protocol.md shows it."""
    rows = ["| field | type |", "| --- | --- |"]
    if type_name is not None:
        rows.append(f'| `type` | "{type_name}" |')
    rows += [f"| `{name}` | {kind.describe()} |" for name, kind in record.SCHEMA]
    return "\n".join(rows)
