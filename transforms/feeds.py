"""Feed documents → typed entries (feedparser).

Takes the raw bytes of a feed and the response headers it came with; never
fetches anything. Relative links are resolved against the feed's own URL.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import feedparser
import lxml.html
from lxml import etree

from transforms.errors import ParseError
from transforms.normalize import canonical_url, normalize_title
from transforms.records import FeedEntry, ParsedFeed

_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "table", "tr", "section", "article", "header", "footer", "figure",
}


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (a feed summary or content:encoded),
    one line per block element so that paragraphs survive."""
    if not fragment or not fragment.strip():
        return ""
    if "<" not in fragment:
        return fragment.strip()
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return fragment.strip()
    for bad in root.xpath("//script|//style"):
        bad.drop_tree()
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.lower() in _BLOCK_TAGS:
            el.tail = "\n" + (el.tail or "")
            if el.tag.lower() != "br":
                el.text = "\n" + (el.text or "")
    return root.text_content().strip()


def _utc(struct) -> datetime | None:
    if not struct:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(struct), tz=timezone.utc)
    except (OverflowError, ValueError, TypeError):
        return None


def _entry_text(entry) -> str:
    # content:encoded / atom:content is the full text when a feed carries it;
    # the summary is often a teaser. Take the longest we get.
    candidates = [c.get("value", "") for c in entry.get("content", []) or []]
    candidates.append(entry.get("summary", "") or "")
    best = max(candidates, key=len)
    return html_to_text(best)


def _http_url(value: str | None) -> bool:
    return bool(value) and urlsplit(value).scheme in ("http", "https")


def parse_feed(
    raw: bytes,
    *,
    source: str,
    url: str,
    headers: dict[str, str] | None = None,
    language: str | None = None,
) -> ParsedFeed:
    """Parse one feed document. Raises ParseError when nothing readable is in
    it; a feed feedparser can partly recover is returned with a warning."""
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    # feedparser resolves relative links against content-location, but mangles
    # file: bases; we resolve links ourselves against the feed's URL instead.
    response_headers.pop("content-location", None)
    try:
        parsed = feedparser.parse(raw, response_headers=response_headers, sanitize_html=True)
    except Exception as exc:  # feedparser is meant not to raise; belt and braces
        raise ParseError(url, "feed_parser_crash", f"{type(exc).__name__}: {exc}") from exc

    warning = None
    if parsed.get("bozo"):
        exc = parsed.get("bozo_exception")
        warning = f"{type(exc).__name__}: {exc}" if exc else "ill-formed feed"
        # Ill-formed and nothing recovered (a truncated response, an HTML
        # error page): a failure to record, not an empty feed.
        if not parsed.entries:
            raise ParseError(url, "malformed_feed", warning)
    if not parsed.get("version") and not parsed.entries:
        raise ParseError(url, "not_a_feed", "no RSS, Atom or RDF document found")

    feed_meta = parsed.get("feed", {})
    feed_language = language or feed_meta.get("language")
    entries: list[FeedEntry] = []
    rejected: list[tuple[str, str]] = []
    failed: list[ParseError] = []
    for item in parsed.entries:
        guid = (item.get("id") or "").strip() or None
        link = (item.get("link") or "").strip()
        if not link and _http_url(guid):
            link = guid
        if not link:
            rejected.append((guid or item.get("title", "") or "?", "entry has no link"))
            continue
        try:
            link = urljoin(url, link)
            canonical = canonical_url(link)
        except ValueError as exc:  # urljoin on an unclosed IPv6 bracket
            failed.append(ParseError(link, "bad_url", str(exc)))
            continue
        except ParseError as exc:  # one malformed link is one failed entry, not a failed feed
            failed.append(exc)
            continue
        entries.append(
            FeedEntry(
                source=source,
                link=link,
                canonical_link=canonical,
                guid=guid,
                title=normalize_title(item.get("title")),
                author=normalize_title(item.get("author")),
                # dict.get: feedparser's own .get maps a missing published to
                # updated with a DeprecationWarning; we ask for both explicitly.
                published_at=_utc(dict.get(item, "published_parsed") or dict.get(item, "updated_parsed")),
                feed_text=_entry_text(item),
                language=item.get("language") or feed_language,
            )
        )
    return ParsedFeed(
        source=source,
        url=url,
        title=normalize_title(feed_meta.get("title")),
        language=feed_language,
        entries=tuple(entries),
        warning=warning,
        rejected=tuple(rejected),
        failed=tuple(failed),
    )
