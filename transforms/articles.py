"""HTML pages → extracted article text and metadata (trafilatura).

Takes bytes already fetched; decodes them with the charset the server and the
page declare, and runs trafilatura with metadata. Never fetches anything.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import trafilatura

from transforms.charsets import bom_encoding, codec_name, detect_encoding
from transforms.controls import strip_control_refs
from transforms.errors import ExtractError
from transforms.normalize import (
    article_id_for,
    choose_article_url,
    choose_published_at,
    content_hash,
    detect_language,
    normalize_text,
    normalize_title,
    to_utc,
    word_count,
)
from transforms.records import Article, ExtractedPage, FeedEntry

if TYPE_CHECKING:
    from trafilatura.settings import Document

# trafilatura options, measured on ../shared/corpus/extraction (120 pages):
# fast=True with comments left out scores F1 0.963 against 0.953 for plain
# trafilatura.extract(), and is ~25 % faster.
EXTRACT_OPTIONS: dict[str, Any] = dict(with_metadata=True, include_comments=False, fast=True)
EXTRACTOR = f"trafilatura {trafilatura.__version__} fast"
_DATE_PARAMS = {"original_date": True, "outputformat": "%Y-%m-%dT%H:%M:%S%z"}

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_HTML_SNIFF = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body|meta|title|article|div|p)\b", re.I | re.S)


def decode_html(body: bytes, declared_charset: str | None = None) -> str:
    """Text of an HTML page: the HTTP charset, else a BOM, else a <meta>
    charset, else UTF-8 if it decodes, else charset detection (the chain of
    transforms.charsets, with <meta> for the XML declaration)."""
    bom = bom_encoding(body)
    if bom:
        return body[bom[1]:].decode(bom[0], errors="replace")
    header = codec_name(declared_charset)
    if header:
        return body.decode(header, errors="replace")
    match = _META_CHARSET.search(body[:4096])
    meta = codec_name(match.group(1).decode("ascii", "ignore")) if match else None
    if meta:
        # Pages that say latin-1 nearly always mean windows-1252 (WHATWG rule).
        if meta in ("iso8859-1", "latin-1", "ascii"):
            meta = "cp1252"
        return body.decode(meta, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode(detect_encoding(body) or "cp1252", errors="replace")


def looks_like_html(body: bytes) -> bool:
    """Sniff for a document served without a usable Content-Type."""
    head = body[:1024].lstrip(b"\xef\xbb\xbf")
    return bool(_HTML_SNIFF.match(head))


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return to_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def extract_page(html: str, url: str) -> ExtractedPage:
    """Extract the article body and metadata of one page. A page with no
    usable text gives text "" (the caller falls back to the feed); a page
    trafilatura cannot even parse raises ExtractError."""
    html = strip_control_refs(html)  # lxml decodes &#27; into text trafilatura then fails on
    try:
        # Without as_dict=True, bare_extraction gives a Document (or None), never a dict.
        doc = cast("Document | None", trafilatura.bare_extraction(html, url=url, date_extraction_params=_DATE_PARAMS,
                                                                  **EXTRACT_OPTIONS))
    except Exception as exc:  # lxml and trafilatura raise a zoo of types on broken markup
        raise ExtractError(url, "extractor_crash", f"{type(exc).__name__}: {exc}") from exc
    if doc is None:
        return ExtractedPage(url=url, declared_url=None, title=None, author=None, published_at=None,
                             text="", extractor=EXTRACTOR)
    return ExtractedPage(
        url=url,
        declared_url=doc.url if doc.url and doc.url != url else None,
        title=doc.title,
        author=doc.author,
        published_at=_parse_date(doc.date),
        text=doc.text or "",
        extractor=EXTRACTOR,
    )


# A page body this much shorter than the feed's own text is a teaser, a bot
# wall or a template page, not the article.
_MIN_PAGE_WORDS = 25
# Interstitials say so in a few stock phrases; looked for only in short pages,
# so an article that merely mentions JavaScript is not mistaken for one.
_BOT_WALL = re.compile(
    r"just a moment|checking (?:if the site connection is secure|your browser)|attention required|"
    r"enable (?:javascript|cookies)|are you a (?:human|robot)|verify you are (?:a )?human|captcha|"
    r"access denied|unusual traffic|ddos protection",
    re.I,
)
_PAYWALL = re.compile(
    r"subscribe (?:now )?to (?:continue|read)|to continue reading|subscribers? only|already a subscriber|"
    r"for subscribers|sign in to (?:continue|read)|this (?:article|content) is (?:for|reserved for) (?:subscribers|members)",
    re.I,
)
_SHORT_PAGE_WORDS = 300


def classify_page(page_body: str, page_title: str | None, feed_body: str) -> str | None:
    """Why a page's text is not the article, or None when it is:
    'bot_wall' (a challenge or interstitial), 'paywalled' (a teaser behind a
    subscription prompt), 'boilerplate_only' (far shorter than the feed's own
    text), 'empty_extraction' (nothing found)."""
    words = word_count(page_body)
    if words < _SHORT_PAGE_WORDS:
        probe = f"{page_title or ''}\n{page_body}"
        if _BOT_WALL.search(probe):
            return "bot_wall"
        if _PAYWALL.search(probe) and (words < 150 or words < word_count(feed_body)):
            return "paywalled"
    if not page_body:
        return "empty_extraction"
    if words < _MIN_PAGE_WORDS and word_count(feed_body) > words:
        return "boilerplate_only"
    return None


def build_article(
    entry: FeedEntry,
    page: ExtractedPage | None,
    *,
    page_problem: str | None,
    run_id: str,
    now: datetime,
) -> Article:
    """Combine a feed entry and its extracted page into a loadable Article.

    The page body wins when there is one; otherwise the feed's content or
    summary is used (body_source='feed') and `body_note` says why. Raises
    ExtractError when neither gives any text."""
    # An entry's title is normalized already, unless it was read back from an
    # older warehouse (a retry, a re-extraction): normalizing twice is a no-op.
    title = normalize_title(entry.title) or (normalize_title(page.title) if page else None)
    page_body = normalize_text(page.text, title, page.title) if page else ""
    feed_body = normalize_text(entry.feed_text, title)
    note = page_problem
    if page is not None:
        verdict = classify_page(page_body, page.title, feed_body)
        if verdict:
            note, page_body = verdict, ""
    if page_body:
        body, body_source, note = page_body, "page", None
    elif feed_body:
        body, body_source = feed_body, "feed"
    else:
        raise ExtractError(entry.link, note or "no_text", "neither the page nor the feed entry has any text")

    # An item without a link has its key here: its global GUID or a urn:newsdesk:entry: hash.
    url = choose_article_url(page.url, page.declared_url) if page and body_source == "page" else entry.canonical_link
    published_at, date_source, date_note = choose_published_at(
        entry.published_at, page.published_at if page else None, first_seen=now, now=now
    )
    if entry.published_raw:
        unread = f"feed date {entry.published_raw!r} could not be read"
        date_note = f"{unread}; {date_note}" if date_note else unread
    return Article(
        article_id=article_id_for(url),
        url=url,
        source=entry.source,
        title=title,
        author=normalize_title(entry.author) or (normalize_title(page.author) if page else None),
        published_at=published_at,
        published_date=published_at.date(),
        date_source=date_source,
        date_note=date_note,
        language=detect_language(body, entry.language),
        body=body,
        body_source=body_source,
        body_note=note,
        word_count=word_count(body),
        content_hash=content_hash(body),
        first_seen_at=now,
        run_id=run_id,
        extractor=page.extractor if page and body_source == "page" else "feed",
        published_raw=entry.published_raw,
    )
