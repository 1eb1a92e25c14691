"""Relative paths inside the synced folder: validation, and the names of our own temp files.

A path is a ``/``-joined string relative to the folder's root (``""`` is the root itself). It is
checked before any I/O: no absolute path, no ``..`` or ``.`` component, no empty component, no NUL.
"""

from __future__ import annotations

import re
import unicodedata

from peer.fs.errors import UnsafePathError

# Temp files are hidden, fixed-length (a 255-byte name still gets one) and recognisable, so the
# scanner, the watcher and the ignore rules can skip them and a restart can sweep leftovers.
TEMP_PREFIX = ".~drift-"
TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"\A\.~drift-[0-9a-f]{16}\.tmp\Z")


def temp_name(token: bytes) -> str:
    """The temp-file name for 8 random bytes."""
    if len(token) != 8:
        raise ValueError("a temp-name token is 8 bytes")
    return f"{TEMP_PREFIX}{token.hex()}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    return _TEMP_RE.match(name) is not None


def split_path(path: str) -> tuple[str, ...]:
    """The components of a valid relative path, or ``UnsafePathError``; ``""`` gives ``()``."""
    if not isinstance(path, str):
        raise UnsafePathError(repr(path), "a path is a str")
    if path == "":
        return ()
    if "\x00" in path:
        raise UnsafePathError(path, "contains NUL")
    if path.startswith("/"):
        raise UnsafePathError(path, "absolute paths are refused; paths are relative to the root")
    parts = tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(path, f"component {part!r} is not a name")
    return parts


def check_path(path: str) -> str:
    split_path(path)
    return path


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def is_within(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or lies below it (``""`` contains everything)."""
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def name_key(name: str, case_insensitive: bool) -> str:
    """The key under which a name is unique in a directory: NFC, and case-folded if asked.

    NFC both before and after folding, because ``casefold`` can leave a string denormalized.
    """
    if name.isascii():  # NFC is the identity on ASCII, and casefold is lower (most names)
        return name.lower() if case_insensitive else name
    nfc = unicodedata.normalize("NFC", name)
    return unicodedata.normalize("NFC", nfc.casefold()) if case_insensitive else nfc
