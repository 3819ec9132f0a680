"""Control characters in text from outside: stripped before it is stored,
escaped before it is printed.

A feed or a page can carry any character, and a terminal acts on some of
them: ESC starts a sequence that clears the screen or recolours it, BEL
rings, U+009B is a one-character CSI on some terminals. "Control" here is
every C0 character (U+0000-U+001F), DEL (U+007F) and every C1 character
(U+0080-U+009F). Tab and newline are text. Pure functions over str; no I/O.
"""

from __future__ import annotations

import html
import re

# The controls that stand for white space: a word break is kept, as a space.
# (Python's str.split() and \s count them as white space too.)
_AS_SPACE = dict.fromkeys(map(ord, "\x0b\x0c\x1c\x1d\x1e\x1f\x85"), " ")
# Every other control but tab and newline (CR is made a newline first).
_DROPPED = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
# What a terminal must never receive raw: every control but tab and newline.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# In a JSON document json.dump has escaped C0 already; DEL and C1 it leaves.
_JSON_UNESCAPED = re.compile(r"[\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """`text` without control characters, tab and newline kept: CRLF and CR
    become a newline, the white-space controls (VT, FF, FS-US, NEL) a space,
    the rest (NUL, BEL, ESC, DEL, CSI ...) are dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_AS_SPACE)
    return _DROPPED.sub("", text)


def one_line(text: str | None) -> str | None:
    """A single-line field (a GUID, a date as written, a language tag):
    controls stripped, newline and tab made spaces, ends trimmed; inner
    spaces are left as they are, so that a key stays the key it was."""
    if text is None:
        return None
    return strip_controls(text).replace("\n", " ").replace("\t", " ").strip() or None


def escape_controls(text: str) -> str:
    """`text` safe to print: each control but tab and newline shown as
    `\\xNN` (ESC as `\\x1b`, NUL as `\\x00`, U+009B as `\\x9b`). A backslash
    already in the text is left alone, so `\\x1b` may also be four characters
    that were stored as such."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def escape_controls_json(document: str) -> str:
    """A JSON document (from json.dumps with ensure_ascii=False) with DEL and
    C1 written as `\\u00NN` escapes, as json already writes C0: the parsed
    value is unchanged, the printed text has no raw control. Outside strings
    JSON is ASCII, so every such character is inside a string."""
    return _JSON_UNESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


_CHAR_REF = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));?")


def strip_control_refs(markup: str) -> str:
    """HTML with its character references to controls (`&#27;`, `&#x0;`,
    `&#127;`) taken out before lxml reads it (FF, VT and the like become a
    space): lxml decodes them into text it
    then refuses to hold ("All strings must be XML compatible"), which lost a
    feed summary or a whole page. `&#x80;`-`&#x9f;` mean windows-1252 in HTML
    (`&#x9b;` is "›") and become that character. Tab, newline and CR stay."""

    def replace(match: re.Match[str]) -> str:
        code = int(match.group(1), 16) if match.group(1) else int(match.group(2))
        if code in (0x09, 0x0A, 0x0D) or not (code < 0x20 or 0x7F <= code <= 0x9F):
            return match.group()
        if code >= 0x80:
            return strip_controls(html.unescape(match.group()))
        return strip_controls(chr(code))  # "" for most, " " for the white-space ones

    return _CHAR_REF.sub(replace, markup)


_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def quote_controls(url: str) -> str:
    """A URL with each control character (tab and newline too: no URL holds
    them) percent-encoded as its UTF-8 bytes, as a browser sends it:
    `/a\\x1b` becomes `/a%1B`."""
    return _ANY_CONTROL.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), url)
