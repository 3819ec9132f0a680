"""Normalization: canonical URLs, clean text, UTC dates, hashes, language.

Pure functions over plain values. The run's clock comes in as an argument
(`now`), so a date "in the future" means later than the run that saw it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import date, datetime, time, timezone
from typing import overload
from urllib.parse import urlsplit, urlunsplit

import courlan

from transforms.controls import strip_controls
from transforms.errors import ParseError

# Ids and hashes must agree across processes, runs and machines: hashlib only,
# never Python's salted hash().


def canonical_url(url: str) -> str:
    """The URL we key articles on: lower-case host, default port, sorted query
    without tracking parameters (utm_*, fbclid, gclid ... as courlan knows
    them), no fragment. A URL courlan cannot parse is kept as given, minus its
    fragment, rather than dropped. A URL that is no URL at all (an unclosed
    IPv6 bracket, a port out of range, a host that cannot be encoded) raises
    ParseError with reason `bad_url`: one such link is one failed entry.
    Only http, https and local file: URLs have a canonical form: any other
    scheme (data:, javascript:, mailto:, ftp: ...) or none raises ParseError
    `scheme_not_allowed`. A file: URL keeps its whole path; one that names a
    host or a relative path raises `bad_url`, as its path would change."""
    url = url.strip()
    check_url(url)
    try:
        cleaned = courlan.normalize_url(url)
    except (ValueError, AttributeError):
        cleaned = url
    try:
        parts = urlsplit(cleaned)
    except ValueError:  # courlan made it worse: keep the URL as given
        parts = urlsplit(url)
    if parts.scheme == "file":
        # A file has no query or fragment; keep only its path.
        return urlunsplit(("file", "", parts.path, "", ""))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


_BAD_HOST_CHARS = set('<>"{}|\\^`')


def _bad_host_char(ch: str) -> bool:
    return ch.isspace() or ch in _BAD_HOST_CHARS or unicodedata.category(ch)[0] == "C"


def check_url(url: str) -> None:
    """Raise ParseError unless `url` is an http(s) URL that can be split into
    parts with a valid port and a host that IDNA can encode (`bad_url`), or a
    local file: URL with an absolute path (`bad_url`); any other scheme is
    `scheme_not_allowed`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ParseError(url, "bad_url", f"{exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "file":
        # file://etc/passwd (feedparser's spelling of file:///etc/passwd)
        # would become /passwd and file:etc/passwd /etc/passwd: another
        # file than the one named, so neither gets a canonical form.
        if parts.netloc.lower() not in ("", "localhost"):
            raise ParseError(url, "bad_url", f"file: URL names host {parts.netloc!r}: only local files "
                             "(file:///path) are read")
        if not parts.path.startswith("/"):
            raise ParseError(url, "bad_url", f"file: URL path {parts.path!r} is not absolute")
        return
    if scheme not in ("http", "https"):
        said = f"{scheme}: URLs are" if scheme else "a URL with no scheme is"
        raise ParseError(url, "scheme_not_allowed", f"{said} not fetched (only http, https and local file:)")
    host = parts.hostname or ""
    if not host:
        raise ParseError(url, "bad_url", "no host")
    if host.startswith("[") or ":" in host:  # an IPv6 literal: urlsplit checked it
        return
    if any(map(_bad_host_char, host)):
        raise ParseError(url, "bad_url", f"host {host!r} has characters a host cannot have")
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise ParseError(url, "bad_url", f"host {host!r} cannot be encoded (IDNA): {exc}") from None


def site_of(url: str) -> str:
    """The registrable domain, to say "same site": news.bbc.co.uk and
    www.bbc.co.uk are one site (courlan knows the public suffixes). Hosts it
    cannot place (an IP address, a reserved TLD) stand for themselves."""
    return courlan.extract_domain(url) or (urlsplit(url).hostname or "").lower()


def choose_article_url(fetched_url: str, declared_url: str | None) -> str:
    """Prefer the page's rel=canonical / og:url when it stays on the site the
    page came from, so a page cannot claim another publisher's identity.
    A page read from a local file (a saved copy) has no site of its own: its
    declared URL is where it came from, and is taken as its identity."""
    fetched = canonical_url(fetched_url)
    if not declared_url:
        return fetched
    try:
        declared = canonical_url(declared_url)
    except ParseError:  # a malformed og:url is no identity
        return fetched
    if urlsplit(declared).scheme not in ("http", "https"):
        return fetched
    if urlsplit(fetched).scheme == "file" or site_of(declared) == site_of(fetched):
        return declared
    return fetched


def article_id_for(url: str) -> str:
    """Stable id of an article: derived from the canonical URL it was first
    loaded under, so every run and machine computes the same id."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:20]


_SPACES = re.compile(r"[^\S\n]+")  # whitespace other than newlines
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def normalize_text(text: str, *titles: str | None) -> str:
    """Unicode NFC, runs of spaces folded, one paragraph per line of input,
    paragraphs separated by a blank line (the layout of the seed documents).
    A first paragraph that only repeats a headline (the feed's or the page's)
    is dropped: the title has a column of its own, and the same page must give
    the same body whichever feed links to it. Control characters other than
    tab and newline are dropped (transforms.controls); CR is a newline."""
    text = strip_controls(unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH)).replace("\u00a0", " ")
    paragraphs = [p for p in (_SPACES.sub(" ", line).strip() for line in text.split("\n")) if p]
    if paragraphs and any(t and _fold(paragraphs[0]) == _fold(t) for t in titles):
        paragraphs = paragraphs[1:]
    return "\n\n".join(paragraphs)


def _fold(s: str) -> str:
    return " ".join(unicodedata.normalize("NFC", s).split()).casefold()


# Longest title (or author, feed title) stored: real ones are under ~300
# characters; a feed can carry 250 kB of entity text in one.
MAX_TITLE_CHARS = 1000


def normalize_title(title: str | None) -> str | None:
    """NFC, control characters dropped, whitespace (newlines and tabs too)
    folded, cut to MAX_TITLE_CHARS (ending in "…"). For every one-line text
    a feed or page names: titles, authors, feed titles."""
    if not title:
        return None
    folded = " ".join(strip_controls(unicodedata.normalize("NFC", title)).split())
    if len(folded) > MAX_TITLE_CHARS:
        folded = folded[:MAX_TITLE_CHARS - 1].rstrip() + "…"
    return folded or None


def content_hash(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


_WORD = re.compile(r"\w+")


def word_count(body: str) -> int:
    return len(_WORD.findall(body))


@overload
def to_utc(value: datetime | date) -> datetime: ...


@overload
def to_utc(value: None) -> None: ...


@overload
def to_utc(value: datetime | date | None) -> datetime | None: ...


def to_utc(value: datetime | date | None) -> datetime | None:
    """Aware UTC datetime; a naive value is taken to be UTC already, a bare
    date is midnight UTC of that day."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=timezone.utc)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def choose_published_at(
    feed_date: datetime | None,
    page_date: datetime | None,
    first_seen: datetime,
    now: datetime,
) -> tuple[datetime, str, str | None]:
    """Pick the publication time: the feed's, else the page's, else when we
    first saw it. A candidate later than `now` (the run's start) is rejected:
    a dated record never lies in the future. Returns (time, source, note)."""
    notes = []
    for candidate, source in ((feed_date, "feed"), (page_date, "page")):
        candidate = to_utc(candidate)
        if candidate is None:
            continue
        if candidate > now:
            notes.append(f"{source} date {candidate.isoformat()} is after the run started")
            continue
        return candidate, source, "; ".join(notes) or None
    return to_utc(first_seen), "first_seen", "; ".join(notes) or None


def detect_language(body: str, fallback: str | None = None, *, min_words: int = 15) -> str | None:
    """ISO 639-1 code of the body's language. Bodies too short to tell fall
    back to what the feed declared."""
    fallback = _lang_code(fallback)
    if word_count(body) < min_words:
        return fallback
    import py3langid  # loads its model once, on first use

    # 2,000 characters decide the language as well as the whole body does,
    # at a fraction of the cost (it was a tenth of all extraction time).
    code, _score = py3langid.classify(body[:2000])
    return code or fallback


def _lang_code(tag: str | None) -> str | None:
    if not tag:
        return None
    code = tag.strip().lower().replace("_", "-").split("-")[0]
    return code if code.isalpha() and 2 <= len(code) <= 3 else None
