"""Ignore rules: a table of gitignore cases, checked against real ``git check-ignore``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from peer.fs import MemFileSystem
from peer.local.ignore import IGNORE_FILE, IgnoreRules, always_ignored, parse_rule

# (rules file, [(path, is_dir, ignored?)]): the expected answers are git's (see the git test).
CASES: list[tuple[str, list[tuple[str, bool, bool]]]] = [
    (
        "*.log\n!keep.log\n",
        [
            ("a.log", False, True),
            ("d/e/b.log", False, True),
            ("keep.log", False, False),
            ("d/keep.log", False, False),
            ("log", False, False),
            ("a.log.txt", False, False),
        ],
    ),
    (
        "/build\nsrc/gen/\n",
        [
            ("build", True, True),
            ("build/x", False, True),
            ("sub/build", True, False),
            ("src/gen", True, True),
            ("src/gen/a.c", False, True),
            ("x/src/gen", True, False),
            ("src/gen2", True, False),
        ],
    ),
    (
        "cache/\n",
        [
            ("cache", True, True),
            ("cache/f", False, True),
            ("a/cache", True, True),
            ("a/cache/f", False, True),
            ("cachefile", False, False),
        ],
    ),
    (
        "**/logs\n**/logs/debug.log\nfoo/**/bar\nout/**\n",
        [
            ("logs", True, True),
            ("x/y/logs", True, True),
            ("foo/bar", False, True),
            ("foo/a/b/bar", False, True),
            ("foo/a/bar/baz", False, True),
            ("foo/bar2", False, False),
            ("out", True, False),
            ("out/a", False, True),
            ("out/c/b", False, True),
            ("x/foo/bar", False, False),
        ],
    ),
    (
        "a?c\n[abc]x\n[!a-y]z\nfo*o\nd/*.tmp\n",
        [
            ("abc", False, True),
            ("a/c", False, False),
            ("bx", False, True),
            ("dx", False, False),
            ("zz", False, True),
            ("bz", False, False),
            ("fo/o", False, False),
            ("foxxo", False, True),
            ("d/a.tmp", False, True),
            ("d/e/a.tmp", False, False),
            ("e/d/a.tmp", False, False),
        ],
    ),
    (
        "# comment\n\\#hash\n\\!bang\ntrail   \nesc\\ \n   \n",
        [
            ("# comment", False, False),
            ("#hash", False, True),
            ("!bang", False, True),
            ("trail", False, True),
            ("trail   ", False, False),
            ("esc ", False, True),
            ("esc", False, False),
        ],
    ),
    (
        "dir/\n!dir/keep\nnested/*\n!nested/keep\n",
        [
            ("dir", True, True),
            ("dir/keep", False, True),
            ("nested/x", False, True),
            ("nested/keep", False, False),
            ("nested", True, False),
        ],
    ),
    (
        "*\n!*/\n!*.txt\n",
        [
            ("a.bin", False, True),
            ("a.txt", False, False),
            ("d", True, False),
            ("d/x.txt", False, False),
            ("d/x.bin", False, True),
        ],
    ),
    (
        "[[:digit:]]x\n[[:upper:]]y\n[![:alpha:]]z\n[[:bogus:]]w\n",
        [
            ("1x", False, True),
            ("ax", False, False),
            ("Ay", False, True),
            ("ay", False, False),
            ("9z", False, True),
            ("qz", False, False),
            ("bw", False, False),
        ],
    ),
    (
        "foo[\nbar[]]\n[]]x\nsp\\ ace\n",
        [
            ("foo[", False, False),
            ("bar]", False, True),
            ("]x", False, True),
            ("sp ace", False, True),
        ],
    ),
]

FLAT = [(rules, path, is_dir, expected) for rules, rows in CASES for path, is_dir, expected in rows]


@pytest.mark.parametrize(("rules", "path", "is_dir", "expected"), FLAT)
def test_table(rules: str, path: str, is_dir: bool, expected: bool) -> None:
    assert IgnoreRules.parse(rules, defaults=False).is_ignored(path, is_dir) is expected


def git_check_ignore(tmp: Path, rules: str, rows: list[tuple[str, bool, bool]]) -> dict[str, bool]:
    repo = tmp / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text(rules)
    for path, is_dir, _ in rows:
        target = repo / path
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"")
    out = subprocess.run(
        ["git", "-C", str(repo), "check-ignore", "--no-index", "-v", "-n", "--stdin", "-z"],
        input="\0".join(path for path, _, _ in rows) + "\0",
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode in (0, 1), out.stderr
    fields = out.stdout.split("\0")
    answers = {}
    for i in range(0, len(fields) - 1, 4):
        _source, _line, pattern, path = fields[i : i + 4]
        answers[path] = bool(pattern) and not pattern.startswith("!")
    return answers


@pytest.mark.parametrize(("rules", "rows"), CASES)
def test_table_agrees_with_git(tmp_path: Path, rules: str, rows: list) -> None:
    assert shutil.which("git"), "git is needed to check the ignore table against reality"
    answers = git_check_ignore(tmp_path, rules, rows)
    for path, _is_dir, expected in rows:
        assert answers[path] is expected, f"git says {path!r} ignored={answers[path]}"


def test_defaults_and_user_overrides() -> None:
    rules = IgnoreRules.parse("")
    for junk in [
        ".DS_Store",
        "a/Thumbs.db",
        "desktop.ini",
        "~$report.docx",
        ".~lock.report.odt#",
        "d/.notes.txt.swp",
        "._photo.jpg",
    ]:
        assert rules.is_ignored(junk, False), junk
    assert rules.is_ignored("$RECYCLE.BIN", True)
    for kept in ["notes.txt~", "a.bak", "report.docx", "Thumbs.dbx", "x.swp"]:
        assert not rules.is_ignored(kept, False), kept
    user = IgnoreRules.parse("!desktop.ini\n")
    assert not user.is_ignored("desktop.ini", False)


def test_our_files_are_always_ignored() -> None:
    rules = IgnoreRules.parse("!*\n!.drift/\n!.drift/**\n")
    assert rules.is_ignored(".drift", True)
    assert rules.is_ignored(".drift/trash/t/x", False)
    assert rules.is_ignored("a/.~drift-0123456789abcdef.tmp", False)
    assert not rules.is_ignored("a/.drift", True)  # only the root's is ours
    assert always_ignored(".~drift-0123456789abcdef.tmp")


def test_case_insensitive_rules() -> None:
    rules = IgnoreRules.parse("*.JPG\nBuild/\n", case_insensitive=True, defaults=False)
    assert rules.is_ignored("a/photo.jpg", False)
    assert rules.is_ignored("build/x", False)
    assert not IgnoreRules.parse("*.JPG\n", defaults=False).is_ignored("photo.jpg", False)


def test_load_reads_the_folders_ignore_file() -> None:
    fs = MemFileSystem.from_uri("mem://?case_insensitive=1")
    assert not IgnoreRules.load(fs).is_ignored("x.tmp", False)
    fs.write_atomic(IGNORE_FILE, b"*.tmp\n")
    loaded = IgnoreRules.load(fs)
    assert loaded.is_ignored("x.TMP", False)
    assert loaded.case_insensitive


def test_blank_and_comment_lines_make_no_rule() -> None:
    assert parse_rule("") is None
    assert parse_rule("   ") is None
    assert parse_rule("# x") is None
    assert parse_rule("/") is None
    rule = parse_rule("!/a/b/")
    assert rule is not None
    assert (rule.negated, rule.dir_only, rule.anchored) == (True, True, True)
