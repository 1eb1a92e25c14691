"""Name safety: unsafe names are kept under a safe stand-in, never lost, never merged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.local.names import (
    PORTABLE,
    NameRules,
    collision_key,
    encode_name,
    find_collisions,
    is_safe_name,
    map_name,
    map_names,
    unsafe_reason,
)

POSIX = NameRules()
WINDOWS = NameRules.for_platform("win32")
MACOS = NameRules.for_platform("darwin")
ALL_RULES = [POSIX, WINDOWS, MACOS, PORTABLE]


@pytest.mark.parametrize(
    "name",
    [
        "CON",
        "con",
        "Con.txt",
        "PRN.tar.gz",
        "aux",
        "NUL.",
        "COM1",
        "lpt9.log",
        "COM\u00b9",
        "CON .txt",
        "a:b",
        "what?",
        "x*y",
        'say "hi"',
        "a|b",
        "a<b>",
        "back\\slash",
        "tab\there",
        "trailing.",
        "trailing ",
        "dots...",
        ".",
        "..",
        "",
        "a/b",
        "nul\x00byte",
        "é" * 200,
        ".drift",
        ".~drift-0123456789abcdef.tmp",
    ],
)
def test_unsafe_on_windows(name: str) -> None:
    assert unsafe_reason(name, WINDOWS) is not None
    encoded = encode_name(name, WINDOWS)
    assert is_safe_name(encoded, WINDOWS), (name, encoded)


@pytest.mark.parametrize(
    "name", ["CONSOLE", "COM10", "LPT0.txt", "con-fig", "a b", ".hidden", "x.y.z", "é", "日本語"]
)
def test_safe_on_windows(name: str) -> None:
    assert is_safe_name(name, WINDOWS)
    assert encode_name(name, WINDOWS) == name


def test_posix_accepts_windows_only_problems() -> None:
    for name in ["CON", "a:b", "trailing.", "what?", "tab\there"]:
        assert is_safe_name(name, POSIX)
    for name in ["a/b", "nul\x00", ".", "..", "", "x" * 256, "é" * 128]:
        assert not is_safe_name(name, POSIX)
    assert is_safe_name("x" * 255, POSIX)


def test_encodings_are_readable_and_keep_extensions() -> None:
    assert encode_name("a:b?.txt", WINDOWS) == "a：b？.txt"
    assert encode_name("CON.txt", WINDOWS) == "CON_.txt"
    assert encode_name("notes.", WINDOWS) == "notes．"
    assert encode_name("a/b", POSIX) == "a／b"
    long = "ü" * 200 + ".jpeg"
    short = encode_name(long, POSIX)
    assert short.endswith(".jpeg")
    assert len(short.encode()) <= 255
    assert short.startswith("ü" * 100)
    assert encode_name(long, POSIX) == short  # deterministic


def test_platform_rules() -> None:
    assert NameRules.for_platform("linux") == POSIX
    assert MACOS.case_insensitive
    assert MACOS.normalization_insensitive
    assert WINDOWS.windows
    assert WINDOWS.case_insensitive


def test_collisions_under_case_and_normalization() -> None:
    names = ["Readme", "README", "café", "cafe\u0301", "other"]
    assert find_collisions(names, MACOS) == [["README", "Readme"], ["cafe\u0301", "café"]]
    assert find_collisions(names, POSIX) == []
    assert collision_key("Straße", MACOS) == collision_key("STRASSE", MACOS)


def test_map_names_keeps_safe_names_and_separates_clashes() -> None:
    mapped = map_names(["a:b", "a：b", "README", "readme", "plain"], WINDOWS)
    assert mapped["plain"] == "plain"
    assert mapped["a：b"] == "a：b"  # the real full-width name keeps its name
    assert mapped["a:b"] != "a：b"
    assert mapped["README"] == "README"
    assert mapped["readme"] != "readme"
    keys = [collision_key(v, WINDOWS) for v in mapped.values()]
    assert len(set(keys)) == len(keys)


def test_map_name_respects_names_already_present() -> None:
    taken = {collision_key("CON_.txt", WINDOWS)}
    out = map_name("CON.txt", WINDOWS, taken)
    assert out != "CON_.txt"
    assert is_safe_name(out, WINDOWS)
    assert collision_key(out, WINDOWS) in taken


names_strategy = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('<>:"/\\|?*. \x00\x01\x1fCONPRAUXLTcon1~é\u0301ß日')),
        st.characters(codec="utf-8"),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(name=names_strategy)
def test_every_encoding_is_safe_everywhere(name: str) -> None:
    for rules in ALL_RULES:
        out = encode_name(name, rules)
        assert is_safe_name(out, rules), (rules, name, out)


@settings(max_examples=200, deadline=None)
@given(names=st.lists(names_strategy, max_size=12))
def test_a_folder_never_maps_two_names_to_one(names: list[str]) -> None:
    for rules in ALL_RULES:
        mapped = map_names(names, rules)
        assert set(mapped) == set(names)
        outputs = list(mapped.values())
        assert all(is_safe_name(out, rules) for out in outputs)
        keys = {collision_key(out, rules) for out in outputs}
        assert len(keys) == len(outputs), (rules, mapped)
        assert map_names(reversed(names), rules) == mapped
