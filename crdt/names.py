"""Name keys and the generated names of conflicted copies and name conflicts."""

from __future__ import annotations

import unicodedata

from crdt.ops import MAX_NAME_BYTES


def name_key(name: str) -> str:
    """Two names collide when their NFC forms are equal after case folding."""
    if name.isascii():
        return name.lower()  # NFC is the identity on ASCII, and casefold is lower
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def split_ext(name: str) -> tuple[str, str]:
    """``"a.tar.gz"`` -> ``("a.tar", ".gz")``; a leading dot is part of the stem (``.bashrc``)."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def _fit(stem: str, tail: str) -> str:
    budget = MAX_NAME_BYTES - len(tail.encode("utf-8"))
    raw = stem.encode("utf-8")
    if len(raw) > budget:
        stem = raw[:budget].decode("utf-8", errors="ignore")
    return stem + tail


def with_suffix(name: str, suffix: str, is_dir: bool) -> str:
    """``"notes.txt"``, ``"name conflict x"`` -> ``"notes (name conflict x).txt"``, ≤ 255 B."""
    stem, ext = (name, "") if is_dir else split_ext(name)
    return _fit(stem, f" ({suffix}){ext}")


def conflicted_copy_name(name: str, replica: str, counter: int) -> str:
    return with_suffix(name, f"conflicted copy {replica} {counter}", is_dir=False)


def name_conflict_name(name: str, node: str, is_dir: bool, attempt: int = 0) -> str:
    tag = f"name conflict {node}" if attempt == 0 else f"name conflict {node} {attempt + 1}"
    return with_suffix(name, tag, is_dir)
