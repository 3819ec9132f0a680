"""Character encodings of fetched documents: which one, and how sure we are.

One chain for pages and feeds: a byte-order mark, else the charset of the
HTTP Content-Type, else the document's own declaration (`<meta charset>` for
HTML, the XML declaration for feeds), else UTF-8 when the bytes are valid
UTF-8, else detection with charset_normalizer. Pure functions on bytes and
header values; nothing here fetches, reads files or the clock.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from charset_normalizer.models import CharsetMatch

BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),  # before UTF-16: FF FE 00 00
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# '<?xm' in the encodings an XML document can start in without a BOM (XML 1.0, appendix F).
_XML_SNIFF = (
    (b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"),
)
_XML_DECLARATION = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9_.:-]+)["']""")
_XML_DECLARATION_TEXT = re.compile(r"""^\s*<\?xml[^>]*\?>""")
_UTF_FAMILY = ("utf-16", "utf-32")
# Legacy single-byte codecs: valid UTF-8 with non-ASCII in it is never what
# they meant (the bytes of "é" in UTF-8 are "Ã©" in any of them).
_SINGLE_BYTE_PREFIXES = ("cp1", "cp8", "iso8859", "latin", "koi8", "mac", "ascii", "tis")
# Languages a feed declares, as charset_normalizer names them: the tie-break
# between encodings it finds equally plausible (EUC-JP and CP949 on a short
# Japanese text, for instance).
_LANGUAGE_NAMES = {
    "ja": "Japanese", "ko": "Korean", "zh": "Chinese", "ru": "Russian", "uk": "Ukrainian", "bg": "Bulgarian",
    "th": "Thai", "he": "Hebrew", "ar": "Arabic", "el": "Greek", "tr": "Turkish", "pl": "Polish", "cs": "Czech",
    "hu": "Hungarian", "vi": "Vietnamese", "fa": "Farsi",
}
_DETECT_BYTES = 200_000


def codec_name(name: str | None) -> str | None:
    """Python's name for a charset label, None when it is not one we know."""
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None


_CHARSET_PARAM = re.compile(r"""(?:^|;)\s*charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def header_charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type value, as given (quoted or not;
    a header sent twice arrives joined by a comma, the first one counts)."""
    match = _CHARSET_PARAM.search(content_type or "")
    return match.group(1) if match else None


def bom_encoding(body: bytes) -> tuple[str, int] | None:
    """(encoding, BOM length) when the bytes start with a byte-order mark."""
    for bom, name in BOMS:
        if body.startswith(bom):
            return name, len(bom)
    return None


def detect_encoding(body: bytes, language: str | None = None) -> str | None:
    """charset_normalizer's best guess, None when it has none. Among the
    guesses that read the bytes equally cleanly (same "chaos"), windows-1252
    wins (the legacy encoding of most Western feeds: charset_normalizer
    otherwise ranks cp1257 or cp1250 first on mostly-ASCII Portuguese), then
    the one whose language is the declared one (EUC-JP over CP949 for "ja")."""
    from charset_normalizer import from_bytes  # ~40 ms to import; only bytes that need it pay

    matches = list(from_bytes(body[:_DETECT_BYTES]))
    if not matches:
        return None
    tied = [m for m in matches if m.chaos == matches[0].chaos]
    wanted = _LANGUAGE_NAMES.get((language or "").strip().lower().replace("_", "-").split("-")[0])
    best = next((m for m in tied if codec_name(m.encoding) == "cp1252"), None) \
        or next((m for m in tied if wanted and _language(m) == wanted), None) or matches[0]
    return codec_name(best.encoding)


def _language(match: CharsetMatch) -> str:
    # `languages` is empty when the text was too short to tell; `language`
    # then is what the encoding implies (EUC-JP: Japanese).
    return match.languages[0] if match.languages else match.language


@dataclass(frozen=True, slots=True)
class DecodedFeed:
    text: str
    encoding: str  # Python codec name the text was read with
    declared: str | None  # what the HTTP header or the XML declaration said, as given
    warning: str | None  # set when the declaration and the bytes disagree, or there was none to go by


def _is_single_byte(codec: str) -> bool:
    return codec.startswith(_SINGLE_BYTE_PREFIXES)


def _strict(body: bytes, codec: str) -> str | None:
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_feed(body: bytes, content_type: str | None = None, language: str | None = None) -> DecodedFeed:
    """Text of a feed document (XML, or a JSON Feed).

    The chain: BOM, else the Content-Type charset, else the XML declaration,
    else UTF-8 when the bytes are valid UTF-8, else detection. A declaration
    the bytes cannot be read in, an unknown one, none at all on bytes that are
    not UTF-8, or valid UTF-8 under a legacy single-byte declaration (read as
    UTF-8) leave a warning. `language` (the feed's, as configured or declared)
    only breaks ties in detection."""
    bom = bom_encoding(body)
    if bom:
        name, size = bom
        return DecodedFeed(body[size:].decode(name, errors="replace"), name, name, None)
    for marker, name in _XML_SNIFF:
        if body.startswith(marker):
            return DecodedFeed(body.decode(name, errors="replace"), name, name, None)

    http_label = header_charset(content_type)
    match = _XML_DECLARATION.match(body[:1024])
    xml_label = match.group(1).decode("ascii") if match else None
    problems: list[str] = []
    declared_label, declared = None, None
    for label in (http_label, xml_label):
        if not label:
            continue
        codec = codec_name(label)
        if codec is None:
            problems.append(f"declared encoding {label!r} is unknown")
            continue
        if codec.startswith(_UTF_FAMILY):
            # UTF-16/32 without a BOM or '<?xml' in that encoding: the label is wrong.
            problems.append(f"declared {label} but the document does not start like {codec}")
            continue
        # Feeds that say latin-1 nearly always mean windows-1252, as pages do
        # (its curly quotes sit where latin-1 has control characters).
        declared_label, declared = label, "cp1252" if codec == "iso8859-1" else codec
        break

    if declared is not None:
        text = _strict(body, declared)
        if declared != "utf-8" and (text is None or _is_single_byte(declared)) and not body.isascii():
            utf8 = _strict(body, "utf-8")
            if utf8 is not None:
                return DecodedFeed(utf8, "utf-8", declared_label,
                                   f"declared {declared_label} but the bytes are UTF-8: read as UTF-8")
        if text is not None:
            return DecodedFeed(text, declared, declared_label, "; ".join(problems) or None)
        problems.append(f"declared {declared_label} but the bytes are not {declared_label}")
    else:
        utf8 = _strict(body, "utf-8")
        if utf8 is not None:
            return DecodedFeed(utf8, "utf-8", None, "; ".join(problems) or None)
        if not problems:
            problems.append("no encoding declared and the bytes are not UTF-8")

    detected = detect_encoding(body, language) or "cp1252"
    problems.append(f"detected {detected}")
    return DecodedFeed(body.decode(detected, errors="replace"), detected, declared_label, ": ".join(
        ["; ".join(problems[:-1]), problems[-1]]))


def utf8_document(text: str) -> bytes:
    """The feed text as UTF-8 bytes that say so: the XML declaration's
    encoding is rewritten (or a declaration added), so that a parser that
    reads the declaration reads what we decoded. A JSON Feed is left as is."""
    if text.lstrip().startswith(("{", "[")):
        return text.encode("utf-8")
    declaration = "<?xml version='1.0' encoding='utf-8'?>"
    if _XML_DECLARATION_TEXT.match(text):
        text = _XML_DECLARATION_TEXT.sub(declaration, text, count=1)
    else:
        text = declaration + "\n" + text
    return text.encode("utf-8")
