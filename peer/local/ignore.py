"""Ignore rules: ``.driftignore`` in gitignore syntax, after a few built-in ones.

Syntax (as git's, checked against ``git check-ignore`` by the tests): ``#`` comments, blank lines,
``!`` re-includes, a leading or inner ``/`` anchors a pattern to the folder's root, a trailing
``/`` matches only directories, ``*`` ``?`` ``[a-z]`` ``[!x]`` ``[[:digit:]]`` never match
``/``, ``**/``, ``/**`` and ``/**/`` span directories, ``\\`` escapes, trailing spaces are
dropped unless escaped. As in git, nothing inside an ignored directory can be re-included.
Only the ``.driftignore`` at the folder's root is read (like syncthing's ``.stignore``); it is
itself synced, so every device of a share applies the same rules.

Always ignored, whatever the rules say: our temp files and ``/.drift/`` (trash and state).
Ignored by default, which a ``!`` line re-includes: OS litter that is per-machine or regenerated
(``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, ``$RECYCLE.BIN/``...), and editor/office lock and
swap files, which name a lock holder on one machine and would make every other device believe the
document is open (``~$*``, ``.~lock.*#``, vim's ``.*.swp``). Backup files (``*~``, ``*.bak``) are
user data and are synced.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from peer.fs.base import FileSystem
from peer.fs.errors import NotFoundError
from peer.fs.paths import TEMP_PREFIX, is_temp_name

IGNORE_FILE = ".driftignore"

DEFAULT_PATTERNS = (
    ".DS_Store",
    "._*",  # AppleDouble resource forks macOS leaves on non-Apple filesystems
    ".Spotlight-V100/",
    ".Trashes/",
    ".fseventsd/",
    ".TemporaryItems/",
    "Icon\r",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    "$RECYCLE.BIN/",
    "System Volume Information/",
    ".Trash-*/",
    ".directory",
    "~$*",  # Microsoft Office owner/lock files
    ".~lock.*#",  # LibreOffice lock files
    ".*.sw[a-p]",  # vim swap files
    ".#*",  # emacs lock links
)


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str  # the line as written
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool
    anchored: bool  # matched against the whole path, else against the last component


def _glob_to_regex(glob: str) -> str:
    """A gitignore glob (no leading ``/``, no trailing ``/``) as a regex over ``/``-paths."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            j = i
            while j < n and glob[j] == "*":
                j += 1
            stars = j - i
            at_start = i == 0 or glob[i - 1] == "/"
            at_end = j == n or glob[j] == "/"
            if stars >= 2 and at_start and at_end:
                if j == n:
                    out.append(".*")  # "x/**": everything inside
                else:
                    out.append("(?:.*/)?")  # "**/x" or "x/**/y": zero or more directories
                    j += 1
            else:
                out.append("[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            cls, i = _char_class(glob, i)
            out.append(cls)
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


def _char_class(glob: str, start: int) -> tuple[str, int]:
    """``[...]`` at ``start``: the regex class and the index after it."""
    i = start + 1
    negate = i < len(glob) and glob[i] in "!^"
    if negate:
        i += 1
    items: list[str] = []
    first = True
    while i < len(glob):
        c = glob[i]
        if c == "[" and glob.startswith("[:", i):
            end = glob.find(":]", i + 2)
            posix = _POSIX_CLASSES.get(glob[i + 2 : end]) if end >= 0 else None
            if posix is None:
                return "(?!)", len(glob)  # git: a malformed class matches nothing
            items.append(posix)
            i = end + 2
            first = False
            continue
        if c == "]" and not first:
            body = "".join(items)
            return (f"[^/{body}]" if negate else f"(?!/)[{body}]"), i + 1
        if c == "\\" and i + 1 < len(glob):
            items.append(re.escape(glob[i + 1]))
            i += 2
        elif c == "-" and items and i + 1 < len(glob) and glob[i + 1] != "]":
            items.append("-")
            i += 1
        else:
            items.append(re.escape(c) if c in "\\^[]-" else c)
            i += 1
        first = False
    return "(?!)", len(glob)  # git: a pattern with an unclosed "[" matches nothing


def _strip_trailing_spaces(line: str) -> str:
    end = len(line)
    while end > 0 and line[end - 1] == " ":
        backslashes = 0
        k = end - 2
        while k >= 0 and line[k] == "\\":
            backslashes += 1
            k -= 1
        if backslashes % 2 == 1:
            break  # "\ " keeps this space
        end -= 1
    return line[:end]


def parse_rule(line: str, *, case_insensitive: bool = False) -> Rule | None:
    """One line of a gitignore-style file as a ``Rule``; ``None`` for blanks and comments."""
    text = _strip_trailing_spaces(line.rstrip("\n").removesuffix("\r"))
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    if negated:
        text = text[1:]
    dir_only = text.endswith("/") and not text.endswith("\\/")
    if dir_only:
        text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    text = text.removeprefix("/")
    if not text:
        return None
    flags = re.IGNORECASE if case_insensitive else 0
    regex = re.compile(_glob_to_regex(text) + r"\Z", flags | re.DOTALL)
    return Rule(line.rstrip("\n"), regex, negated, dir_only, anchored)


class IgnoreRules:
    """An ordered list of rules; the last one that matches a path decides."""

    def __init__(self, rules: list[Rule], *, case_insensitive: bool = False) -> None:
        self.rules = rules
        self.case_insensitive = case_insensitive
        flags = re.IGNORECASE | re.DOTALL if case_insensitive else re.DOTALL
        # One combined regex per kind answers "no rule matches" (the usual case) in one call.
        self._any_name = _combine([r for r in rules if not r.anchored], flags)
        self._any_path = _combine([r for r in rules if r.anchored], flags)

    @classmethod
    def parse(
        cls, text: str, *, case_insensitive: bool = False, defaults: bool = True
    ) -> IgnoreRules:
        # Every scan loads the rules again, and they almost never change: compiled once.
        return _parsed(text, case_insensitive, defaults)

    @classmethod
    def load(cls, fs: FileSystem, *, defaults: bool = True) -> IgnoreRules:
        """The rules of the folder behind ``fs``: defaults, then its ``.driftignore`` if any."""
        try:
            with fs.open_read(IGNORE_FILE) as stream:
                text = stream.read().decode("utf-8", "replace")
        except NotFoundError:
            text = ""
        return cls.parse(text, case_insensitive=fs.case_insensitive, defaults=defaults)

    def matches(self, path: str, is_dir: bool) -> bool:
        """Whether the rules exclude ``path`` itself (its parents are not looked at)."""
        if always_ignored(path):
            return True
        name = path.rpartition("/")[2]
        if not (
            (self._any_name is not None and self._any_name.match(name))
            or (self._any_path is not None and self._any_path.match(path))
        ):
            return False
        for rule in reversed(self.rules):
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(path if rule.anchored else name):
                return not rule.negated
        return False

    def is_ignored(self, path: str, is_dir: bool) -> bool:
        """Whether ``path`` is excluded, by itself or by an excluded parent directory."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            if self.matches("/".join(parts[:i]), True):
                return True
        return self.matches(path, is_dir)


@functools.lru_cache(maxsize=32)
def _parsed(text: str, case_insensitive: bool, defaults: bool) -> IgnoreRules:
    lines = [*(DEFAULT_PATTERNS if defaults else ()), *text.splitlines()]
    rules = [r for r in (parse_rule(x, case_insensitive=case_insensitive) for x in lines) if r]
    return IgnoreRules(rules, case_insensitive=case_insensitive)


def _combine(rules: list[Rule], flags: int) -> re.Pattern[str] | None:
    if not rules:
        return None
    return re.compile("|".join(f"(?:{r.regex.pattern})" for r in rules), flags)


def always_ignored(path: str) -> bool:
    """Our own files: temp files anywhere, ``.drift/`` at the root. No rule re-includes them."""
    if path.startswith(".drift") and (len(path) == 6 or path[6] == "/"):
        return True
    name = path.rpartition("/")[2]
    return name.startswith(TEMP_PREFIX) and is_temp_name(name)
