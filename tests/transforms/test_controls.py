"""Control characters: stripped from what is stored, escaped in what is printed."""

import json

import pytest

from transforms.controls import (
    escape_controls,
    escape_controls_json,
    one_line,
    strip_control_refs,
    strip_controls,
)
from transforms.normalize import normalize_text, normalize_title

# Every C0 control, DEL and every C1 control: 65 characters.
EVERY_CONTROL = "".join(map(chr, [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]))
# What no stored single-line field and no printed text may hold.
UNPRINTABLE = set(EVERY_CONTROL) - {"\t", "\n"}


@pytest.mark.parametrize("raw, clean", [
    ("Entity ctrl \x1b[2J\x1b[31mRED \x07 bell", "Entity ctrl [2J[31mRED  bell"),
    ("a\x00b", "ab"),
    ("a\x9b31mb", "a31mb"),
    ("a\x7fb", "ab"),
    ("a\x80b\x9fc", "abc"),
    ("one\r\ntwo\rthree\nfour", "one\ntwo\nthree\nfour"),
    ("tab\tkept", "tab\tkept"),
    ("form\x0cfeed\x0bvt\x85nel\x1fus", "form feed vt nel us"),
    # Not controls: no-break space, "›" (U+203A), "…", a right-to-left mark.
    ("café\u00a0› … \u200f", "café\u00a0› … \u200f"),
])
def test_strip_controls(raw, clean):
    assert strip_controls(raw) == clean


def test_strip_controls_leaves_only_tab_and_newline():
    assert strip_controls(EVERY_CONTROL) == "\t\n  \n     "  # HT LF, VT FF, CR→LF, FS GS RS US NEL
    assert not set(strip_controls(EVERY_CONTROL * 3 + "text")) & UNPRINTABLE


@pytest.mark.parametrize("raw, clean", [
    ("g\x1b1", "g1"),
    ("  Mon,\t1 Jan\n2024 \x07 ", "Mon, 1 Jan 2024"),
    ("tag:example.com,2024:a  b", "tag:example.com,2024:a  b"),  # inner spaces are part of a key
    ("\x00\x1b", None),
    (None, None),
])
def test_one_line(raw, clean):
    assert one_line(raw) == clean


@pytest.mark.parametrize("raw, shown", [
    ("Entity ctrl \x1b[2J\x1b[31mRED \x07 bell", "Entity ctrl \\x1b[2J\\x1b[31mRED \\x07 bell"),
    ("nul\x00 csi\x9b del\x7f cr\r", "nul\\x00 csi\\x9b del\\x7f cr\\x0d"),
    ("line\nnext\ttab", "line\nnext\ttab"),
    ("café › ok", "café › ok"),
])
def test_escape_controls(raw, shown):
    assert escape_controls(raw) == shown


def test_escape_controls_leaves_nothing_a_terminal_acts_on():
    shown = escape_controls(EVERY_CONTROL)
    assert not set(shown) & UNPRINTABLE
    assert shown.count("\\x") == len(UNPRINTABLE)


def test_escape_controls_json_keeps_the_value():
    value = {"title": "a\x1b[2J\x9b31m\x7f\x00\x85 café\nline"}
    document = escape_controls_json(json.dumps(value, ensure_ascii=False))
    assert not set(document) & UNPRINTABLE
    assert "\\u009b" in document and "\\u007f" in document and "café" in document
    assert json.loads(document) == value


@pytest.mark.parametrize("markup, clean", [
    ("<p>x &#27;[2J &#0; y</p>", "<p>x [2J  y</p>"),
    ("a &#x1B;b &#x00000007;c &#127;d", "a b c d"),
    ("&#x9b; is windows-1252 in HTML", "› is windows-1252 in HTML"),
    ("&#12;form feed", " form feed"),
    ("kept: &#9; &#10; &#13; &#8217; &#x2019; &amp; &#99999999999;", "kept: &#9; &#10; &#13; &#8217; &#x2019; &amp; &#99999999999;"),
])
def test_strip_control_refs(markup, clean):
    assert strip_control_refs(markup) == clean


def test_titles_and_bodies_lose_controls():
    assert normalize_title("Entity ctrl \x1b[2J\x1b[31mRED \x07 bell\x00\x9b\x7f") == "Entity ctrl [2J[31mRED bell"
    assert normalize_title("\x1b\x07") is None
    body = normalize_text("First \x1b[2Jparagraph\x00.\r\nSecond\tone\x9b\x7f.\n")
    assert body == "First [2Jparagraph.\n\nSecond one."
    assert not set(normalize_text(EVERY_CONTROL.join(["a", "b", "c"]))) & UNPRINTABLE
