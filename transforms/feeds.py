"""Feed documents → typed entries (feedparser).

Takes the raw bytes of a feed and the response headers it came with; never
fetches anything. The bytes are decoded by the charset chain of
`transforms.charsets` before feedparser sees them; titles and bodies go
through one text path (`feed_text`); relative links are resolved against the
feed's own URL; an item without a link is keyed on its GUID or a hash.

Importing this module registers two date handlers with feedparser (global
state, set once here): one for 12-hour clocks, which feedparser reads as if
"PM" were not there, and one for dates in other languages, tried after all of
feedparser's own. Neither reads the clock.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import html
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeGuard, cast
from urllib.parse import urljoin, urlsplit

import feedparser
import feedparser.datetimes
import lxml.html
from lxml import etree

from transforms.charsets import DecodedFeed, decode_feed, utf8_document
from transforms.controls import one_line, quote_controls, strip_control_refs, strip_controls
from transforms.dedupe import global_guid
from transforms.errors import ParseError
from transforms.normalize import canonical_url, normalize_text, normalize_title
from transforms.records import FeedEntry, ParsedFeed

if TYPE_CHECKING:
    from dateparser.date import DateDataParser

_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "table", "tr", "section", "article", "header", "footer", "figure",
}
_HTML_TYPES = {"text/html", "application/xhtml+xml", "html", "xhtml"}


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (a feed summary or content:encoded),
    one line per block element so that paragraphs survive. Character
    references are decoded, with or without tags around them; control
    characters, raw or as references, are dropped."""
    if not fragment or not fragment.strip():
        return ""
    fragment = strip_control_refs(strip_controls(fragment))
    if "<" not in fragment:
        return html.unescape(fragment).strip()
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return html.unescape(fragment).strip()
    for bad in root.xpath("//script|//style"):
        bad.drop_tree()
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.lower() in _BLOCK_TAGS:
            el.tail = "\n" + (el.tail or "")
            if el.tag.lower() != "br":
                el.text = "\n" + (el.text or "")
    # lxml-stubs leave fragment_fromstring untyped; an HTML element's text_content() is a str.
    return cast(str, root.text_content()).strip()


def feed_text(value: str | None, content_type: str | None) -> str:
    """The text of one feed field as the publisher meant it. feedparser gives
    each field's type: html and xhtml fields are markup (tags stripped,
    references decoded); text/plain ones are literal and kept as they are
    ("History of the <blink> tag"). Control characters but tab and newline
    are dropped here (transforms.controls); whitespace and NFC are left to
    `normalize_title` / `normalize_text`."""
    if not value:
        return ""
    if (content_type or "text/html").strip().lower() in _HTML_TYPES:
        return html_to_text(value)
    return strip_controls(value).strip()


def _field_text(item: Mapping[str, Any], name: str) -> str:
    detail = item.get(f"{name}_detail") or {}
    return feed_text(item.get(name), detail.get("type"))


# -- dates -------------------------------------------------------------------

# A fixed base: dateparser fills missing parts from it, and reads the clock
# when it has none. Dates missing a part are refused anyway (REQUIRE_PARTS).
_DATEPARSER_SETTINGS = {
    "RELATIVE_BASE": datetime(2000, 1, 1),
    "PARSERS": ["absolute-time"],  # never "yesterday", "3 hours ago" or a bare timestamp
    "REQUIRE_PARTS": ["day", "month", "year"],
    "TIMEZONE": "UTC",  # a date without an offset is UTC, as feedparser takes it
    "TO_TIMEZONE": "UTC",
    "RETURN_AS_TIMEZONE_AWARE": True,
}
# The languages dateparser tries. Its default is all ~200 of them, which costs
# ~10 s to load before the first unreadable date is given up on; these cost
# ~2 s, once per process, and only in a process that meets such a date.
_DATE_LANGUAGES = [
    "en", "fr", "de", "es", "it", "pt", "nl", "ca", "sv", "da", "nb", "fi", "pl", "cs", "sk", "sl", "hr", "sr",
    "hu", "ro", "bg", "ru", "uk", "lt", "lv", "et", "el", "tr", "id", "ms", "vi", "th", "he", "ar", "fa", "hi",
    "ja", "zh", "ko",
]
_TWELVE_HOUR = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?\s*[ap]\.?\s?m\b", re.I)
# A complete date has a year: four digits, or two at the end of a numeric date.
_HAS_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)|\d{1,2}[./-]\d{1,2}[./-]\d{2}(?!\d)")
_parser: list[DateDataParser] = []  # the DateDataParser, made on first use


def parse_date_text(value: str | None) -> datetime | None:
    """A date in one of _DATE_LANGUAGES, honouring its offset and AM/PM, as
    aware UTC; None when it is not a complete absolute date (no relative
    dates: "yesterday" is None whatever day it is)."""
    if not value or not _HAS_YEAR.search(value):
        return None  # cheap: dateparser would load every language before saying no
    if not _parser:
        # dateparser costs ~0.4 s to import: only feeds with such dates pay.
        from dateparser.date import DateDataParser

        _parser.append(DateDataParser(languages=_DATE_LANGUAGES, settings=_DATEPARSER_SETTINGS))
    try:
        found = _parser[0].get_date_data(value.strip()).date_obj
    except (ValueError, OverflowError, TypeError, AttributeError):
        return None
    return found.astimezone(timezone.utc) if found else None


def _twelve_hour_handler(value: str) -> tuple[int, ...] | None:
    # Before feedparser's own handlers: its RFC 822 reader drops "PM".
    if not _TWELVE_HOUR.search(value):
        return None
    found = parse_date_text(value)
    return found.utctimetuple() if found else None


def _any_language_handler(value: str) -> tuple[int, ...] | None:
    found = parse_date_text(value)
    return found.utctimetuple() if found else None


def _register_date_handlers() -> None:
    handlers = feedparser.datetimes._date_handlers
    if any(getattr(h, "__module__", None) == __name__ for h in handlers):
        return  # a reloaded module: registered already
    feedparser.registerDateHandler(_twelve_hour_handler)
    # registerDateHandler puts a handler first; this one must come last, so
    # that only dates feedparser cannot read reach it.
    feedparser.registerDateHandler(_any_language_handler)
    handlers.remove(_any_language_handler)
    handlers.append(_any_language_handler)


_register_date_handlers()


def _utc(struct: tuple[int, ...] | None) -> datetime | None:
    if not struct:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(struct), tz=timezone.utc)
    except (OverflowError, ValueError, TypeError):
        return None


# -- entries -----------------------------------------------------------------


def _entry_text(entry: Mapping[str, Any]) -> str:
    # content:encoded / atom:content is the full text when a feed carries it;
    # the summary is often a teaser. Take the longest we get.
    candidates = [feed_text(c.get("value"), c.get("type")) for c in entry.get("content", []) or []]
    candidates.append(_field_text(entry, "summary"))
    return max(candidates, key=len)


def _http_url(value: str | None) -> TypeGuard[str]:
    return bool(value) and urlsplit(value).scheme in ("http", "https")


def entry_key(source: str, guid: str | None, title: str | None, date: str | None) -> str:
    """The identity of an item without a link: its GUID when that is global
    (tag:, urn:), else a hash of the feed with its GUID, or with its title
    and date, so that a rerun finds the same key."""
    global_key = global_guid(guid)  # the GUID itself when it is global
    if global_key:
        return global_key
    parts = ("guid", source, guid) if guid else ("item", source, title or "", date or "")
    return "urn:newsdesk:entry:" + hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:32]


def parse_feed(
    raw: bytes,
    *,
    source: str,
    url: str,
    headers: dict[str, str] | None = None,
    language: str | None = None,
) -> ParsedFeed:
    """Parse one feed document. Raises ParseError when nothing readable is in
    it; a feed feedparser can partly recover, or whose encoding had to be
    guessed, is returned with a warning."""
    parsed, decoded, warnings = _read_document(raw, url, headers, language)
    feed_meta = parsed.get("feed", {})
    feed_language = language or one_line(feed_meta.get("language"))
    entries: list[FeedEntry] = []
    rejected: list[tuple[str | None, str]] = []
    failed: list[ParseError] = []
    # How the document spelled a link, read from it only when a link is refused.
    spellings = functools.cache(lambda: _slash_spellings(decoded.text))
    for item in parsed.entries:
        try:
            entry = _entry(item, source=source, url=url, language=feed_language, spellings=spellings)
        except ParseError as exc:  # one malformed link is one failed entry, not a failed feed
            failed.append(exc)
            continue
        if isinstance(entry, str):
            rejected.append((None, entry))
        else:
            entries.append(entry)
    return ParsedFeed(
        source=source,
        url=url,
        title=normalize_title(_field_text(feed_meta, "title")),
        language=feed_language,
        entries=tuple(entries),
        warning=strip_controls("; ".join(warnings)) or None,  # feedparser quotes the server's Content-Type
        rejected=tuple(rejected),
        encoding=decoded.encoding,
        failed=tuple(failed),
        ttl_min=_positive_int(feed_meta.get("ttl")),
        update_period=(str(feed_meta.get("sy_updateperiod") or "").strip().lower() or None),
        update_frequency=_positive_int(feed_meta.get("sy_updatefrequency")),
    )


def _read_document(raw: bytes, url: str, headers: dict[str, str] | None,
                   language: str | None) -> tuple[Any, DecodedFeed, list[str]]:
    """feedparser's reading of the document, decoded first by our charset
    chain; and the warnings of a feed read despite a problem. Raises
    ParseError when nothing readable is in it."""
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    # feedparser resolves relative links against content-location, but mangles
    # file: bases; we resolve links ourselves against the feed's URL instead.
    response_headers.pop("content-location", None)
    decoded = decode_feed(raw, response_headers.get("content-type"), language or _declared_language(raw))
    if "content-type" in response_headers:
        # feedparser gets UTF-8 and is told so; the media type stays its own.
        media_type = response_headers["content-type"].split(";")[0].strip()
        response_headers["content-type"] = f"{media_type}; charset=utf-8"
    try:
        parsed = feedparser.parse(utf8_document(decoded.text), response_headers=response_headers, sanitize_html=True)
    except Exception as exc:  # feedparser is meant not to raise; belt and braces
        raise ParseError(url, "feed_parser_crash", f"{type(exc).__name__}: {exc}") from exc

    warnings = [f"encoding: {decoded.warning}"] if decoded.warning else []
    if parsed.get("bozo"):
        bozo_exc = parsed.get("bozo_exception")
        bozo = f"{type(bozo_exc).__name__}: {bozo_exc}" if bozo_exc else "ill-formed feed"
        # Ill-formed and nothing recovered (a truncated response, an HTML
        # error page): a failure to record, not an empty feed.
        if not parsed.entries:
            raise ParseError(url, "malformed_feed", bozo)
        warnings.append(bozo)
    if not parsed.get("version") and not parsed.entries:
        raise ParseError(url, "not_a_feed", "no RSS, Atom or RDF document found")
    return parsed, decoded, warnings


def _entry(item: Any, *, source: str, url: str, language: str | None,
           spellings: Callable[[], dict[str, str]]) -> FeedEntry | str:
    """One item as an entry; or why it was rejected (no link and no text).
    Raises ParseError for a link that cannot be one."""
    guid = one_line(item.get("id"))
    # A control in a link is no part of any URL: percent-encoded, as a browser does.
    link: str | None = quote_controls((item.get("link") or "").strip())
    if not link and _http_url(guid):
        link = guid
    title = normalize_title(_field_text(item, "title"))
    text = _entry_text(item)
    # dict.get: feedparser's own .get maps a missing published to
    # updated with a DeprecationWarning; we ask for both explicitly.
    date_parsed = dict.get(item, "published_parsed") or dict.get(item, "updated_parsed")
    date_raw = one_line(dict.get(item, "published") or dict.get(item, "updated"))
    published_at = _utc(date_parsed)
    if link:
        try:
            scheme = urlsplit(link).scheme.lower()
            if scheme in ("", "http", "https"):
                link = urljoin(url, link)
                key = canonical_url(link)
        except ValueError as exc:  # urlsplit or urljoin on an unclosed IPv6 bracket
            raise ParseError(link, "bad_url", str(exc)) from None
        if scheme not in ("", "http", "https"):
            # Any feed links to pages over http(s); a local feed's
            # relative links (the seeds') become files beside it.
            raise ParseError(spellings().get(link, link), "scheme_not_allowed",
                             f"{scheme}: link refused: an entry's link must be http(s), or relative to the feed")
    elif normalize_text(text, title):
        # No page to fetch, but the whole item is here: an article from the feed's text.
        link, key = None, entry_key(source, guid, title, date_raw)
    else:
        return f"entry has no link and no text (guid {guid!r}, title {title!r})"
    return FeedEntry(
        source=source,
        link=link,
        canonical_link=key,
        guid=guid,
        title=title,
        author=normalize_title(html.unescape(item.get("author") or "")),
        published_at=published_at,
        feed_text=text,
        language=one_line(item.get("language")) or language,
        published_raw=date_raw if published_at is None else None,
    )


def _positive_int(value: object) -> int | None:
    """A count the feed wrote as text (`<ttl> 60 </ttl>`); None if it is no
    positive whole number."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


# The scheme's length is bounded so that a long run of letters costs one
# pass, not one per starting letter.
_EXTRA_SLASHES = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31}:)//(/+)([^\s<\"']+)")


def _slash_spellings(document: str) -> dict[str, str]:
    """feedparser drops the slashes after `scheme://` (its repair of
    `http:///host`), so `file:///etc/passwd` reaches us as
    `file://etc/passwd`: its spelling -> the document's, for every such URL,
    so that a refused link is named as the feed wrote it. One pass over the
    document, however many links are refused."""
    return {f"{m[1]}//{html.unescape(m[3])}": f"{m[1]}//{m[2]}{html.unescape(m[3])}"
            for m in _EXTRA_SLASHES.finditer(document)}


_LANGUAGE_TAG = re.compile(rb"<(?:language|dc:language)>\s*([A-Za-z]{2,3})\b|\bxml:lang=[\"']([A-Za-z]{2,3})\b")


def _declared_language(raw: bytes) -> str | None:
    """The language a feed declares, read from its bytes before they are
    decoded (ASCII in any ASCII-compatible encoding): a tie-break for detection."""
    match = _LANGUAGE_TAG.search(raw[:20_000])
    return (match.group(1) or match.group(2)).decode("ascii") if match else None
