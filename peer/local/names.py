"""Whether a name received from another device can be created here, and what to call it if not.

A name that is unsafe on this OS (``CON``, ``a:b``, a trailing dot, 300 bytes of UTF-8, ...) is
never dropped: the file is written under an encoded name (lookalike characters, readable), and the
caller records the mapping (``LocalIndex.record_name``) so the tree keeps the original. Within one
directory the mapping is injective, also under this filesystem's idea of "the same name" (case
and Unicode normalization).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from peer.fs.paths import is_temp_name, name_key

_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{p}{d}" for p in ("COM", "LPT") for d in (*"123456789", "\u00b9", "\u00b2", "\u00b3")]
)
_WINDOWS_CHARS = frozenset('<>:"\\|?*')
# Lookalikes: full-width forms for punctuation, Control Pictures for control characters.
_LOOKALIKE = {c: chr(0xFF00 + ord(c) - 0x20) for c in '<>:"\\|?*/'}
_LOOKALIKE.update({chr(c): chr(0x2400 + c) for c in range(0x20)})
_FULLWIDTH_DOT = "\uff0e"
_SPACE_PICTURE = "\u2420"
_RESERVED_PREFIX = "\uff3f"  # full-width low line, before names driftsync keeps for itself
_OUR_NAMES = frozenset({".drift"})
_HASH_HEX = 8


@dataclass(frozen=True, slots=True)
class NameRules:
    """What a filesystem accepts and which names it treats as the same."""

    windows: bool = False  # reserved device names, <>:"\|?*, control chars, trailing dot/space
    max_bytes: int = 255  # UTF-8 bytes per name (Linux, macOS); Windows counts UTF-16 units
    case_insensitive: bool = False
    normalization_insensitive: bool = False  # macOS: NFC and NFD spell one name

    @classmethod
    def for_platform(cls, platform: str = sys.platform) -> NameRules:
        if platform.startswith(("win", "cygwin")):
            return cls(windows=True, case_insensitive=True)
        if platform == "darwin":
            return cls(case_insensitive=True, normalization_insensitive=True)
        return cls()


PORTABLE = NameRules(windows=True, case_insensitive=True, normalization_insensitive=True)
"""The strictest rules: a folder that may be opened on Windows, macOS and Linux alike."""


def collision_key(name: str, rules: NameRules) -> str:
    """Two names with one key cannot both exist in one directory under ``rules``."""
    if rules.case_insensitive:
        return name_key(name, case_insensitive=True)
    if rules.normalization_insensitive:
        return name_key(name, case_insensitive=False)
    return name


def unsafe_reason(name: str, rules: NameRules) -> str | None:
    """Why ``name`` cannot be created as it is, or ``None`` if it can."""
    if name in ("", ".", ".."):
        return "not a file name"
    if "/" in name or "\x00" in name:
        return "contains '/' or NUL"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid Unicode"
    if size > rules.max_bytes:
        return f"longer than {rules.max_bytes} bytes"
    if is_temp_name(name) or name in _OUR_NAMES:
        return "a name driftsync keeps for itself"
    if rules.windows:
        if len(name.encode("utf-16-le")) // 2 > 255:
            return "longer than 255 UTF-16 units"
        if any(c in _WINDOWS_CHARS or ord(c) < 0x20 for c in name):
            return 'contains one of <>:"\\|?* or a control character'
        if name[-1] in ". ":
            return "ends with a dot or a space"
        if _windows_stem(name) in _WINDOWS_RESERVED:
            return "a reserved Windows device name"
    return None


def is_safe_name(name: str, rules: NameRules) -> bool:
    return unsafe_reason(name, rules) is None


def _windows_stem(name: str) -> str:
    return name.partition(".")[0].rstrip(" ").upper()


def _tag(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]


def _fits(name: str, rules: NameRules) -> bool:
    if len(name.encode("utf-8", "surrogatepass")) > rules.max_bytes:
        return False
    return not (rules.windows and len(name.encode("utf-16-le", "surrogatepass")) // 2 > 255)


def _shorten(name: str, suffix: str, rules: NameRules) -> str:
    """Cut ``name``'s stem so that stem + ``suffix`` + extension fits, keeping the extension."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, ext = name, ""
    ext = f".{ext}" if ext else ""
    while stem and not _fits(stem + suffix + ext, rules):
        stem = stem[:-1]
    return stem + suffix + ext


def encode_name(name: str, rules: NameRules) -> str:
    """A safe, deterministic, readable stand-in for ``name`` (itself if it is already safe)."""
    if is_safe_name(name, rules):
        return name
    if name in ("", ".", ".."):
        out = _RESERVED_PREFIX + _FULLWIDTH_DOT * len(name)
    else:
        subst = _LOOKALIKE if rules.windows else {c: _LOOKALIKE[c] for c in "/\x00"}
        out = "".join(subst.get(c, _LOOKALIKE.get(c, c) if ord(c) < 0x20 else c) for c in name)
        out = out.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        if rules.windows:
            core = out.rstrip(". ")
            tail = out[len(core) :].replace(".", _FULLWIDTH_DOT).replace(" ", _SPACE_PICTURE)
            out = core + tail
            if _windows_stem(out) in _WINDOWS_RESERVED:
                stem, dot, ext = out.partition(".")
                out = f"{stem}_{dot}{ext}"
        if is_temp_name(out) or out in _OUR_NAMES:
            out = _RESERVED_PREFIX + out
    if not _fits(out, rules):
        out = _shorten(out, f"~{_tag(name)}", rules)
    return out


def map_name(name: str, rules: NameRules, taken: set[str]) -> str:
    """The local name for ``name`` in a directory whose names already have the keys ``taken``.

    Adds the result's key to ``taken``. A clash (an unsafe name whose stand-in is taken, or two
    names the filesystem considers equal) gets a stable ``~<hash>`` tag, then a counter.
    """
    candidate = encode_name(name, rules)
    n = 0
    while collision_key(candidate, rules) in taken:
        n += 1
        suffix = f"~{_tag(name)}" + (f"-{n - 1}" if n > 1 else "")
        candidate = _shorten(encode_name(name, rules), suffix, rules)
    taken.add(collision_key(candidate, rules))
    return candidate


def map_names(names: Iterable[str], rules: NameRules) -> dict[str, str]:
    """Local names for one directory's remote names: injective, all safe, deterministic.

    Safe names keep themselves unless an earlier (sorted) name already holds their key.
    """
    ordered = sorted(set(names))
    taken: set[str] = set()
    out: dict[str, str] = {}
    for name in ordered:
        if is_safe_name(name, rules) and collision_key(name, rules) not in taken:
            taken.add(collision_key(name, rules))
            out[name] = name
    for name in ordered:
        if name not in out:
            out[name] = map_name(name, rules, taken)
    return out


def find_collisions(names: Iterable[str], rules: NameRules) -> list[list[str]]:
    """Groups of names that would be one entry under ``rules`` (``a`` and ``A``, NFC and NFD)."""
    groups: dict[str, list[str]] = {}
    for name in set(names):
        groups.setdefault(collision_key(name, rules), []).append(name)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)
