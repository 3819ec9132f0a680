"""Typed records that cross the package boundaries.

Feed entries come out of `transforms.feeds`, pages out of `transforms.articles`;
`Article`, `Sighting` and `Failure` are what `warehouse` loads. All are frozen:
a record is built once, in a transform, and never patched on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np

from transforms.errors import NewsdeskError, ParseError


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One item of a feed, as the publisher described it."""

    source: str
    link: str | None  # absolute, as given by the feed (resolved against the feed URL); None: the item has none
    # `link` after URL normalization: the key we dedupe on. An item without a
    # link is keyed on its GUID (tag:, urn:) or on a hash of feed, GUID or
    # title and date (`urn:newsdesk:entry:...`): see transforms.feeds.entry_key.
    canonical_link: str
    guid: str | None
    title: str | None
    author: str | None
    published_at: datetime | None  # UTC, None when the feed gives no usable date
    feed_text: str  # content or summary as plain text, "" when absent
    language: str | None  # the feed's or entry's declared language
    published_raw: str | None = None  # the feed's date string when no parser could read it

    @property
    def has_link(self) -> bool:
        return self.link is not None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    source: str
    url: str
    title: str | None
    language: str | None
    entries: tuple[FeedEntry, ...]
    # What was wrong with a feed we could still read: its encoding (declared
    # and actual disagree, or none declared on non-UTF-8 bytes) and
    # feedparser's "bozo" diagnostics, "; "-separated.
    warning: str | None = None
    # Entries dropped while parsing (no link and no text), as (URL or None, why).
    rejected: tuple[tuple[str | None, str], ...] = ()
    encoding: str | None = None  # the codec the document was read with
    # Entries that could not be read (a malformed link ...), one error each.
    failed: tuple[ParseError, ...] = ()
    # How often the publisher says to come back (transforms/schedule.py).
    ttl_min: int | None = None  # RSS <ttl>
    update_period: str | None = None  # sy:updatePeriod
    update_frequency: int | None = None  # sy:updateFrequency


@dataclass(frozen=True, slots=True)
class ExtractedPage:
    """What trafilatura found in one HTML page."""

    url: str  # the URL the page was fetched from (after redirects)
    declared_url: str | None  # rel=canonical / og:url, as the page gives it
    title: str | None
    author: str | None
    published_at: datetime | None  # UTC
    text: str  # raw extracted text, not yet normalized; "" when nothing usable
    extractor: str


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """MinHash signature of a body and its LSH band keys (transforms.fingerprints)."""

    scheme: str
    shingles: int  # size of the shingle set, for the containment estimate
    signature: bytes  # num_perm little-endian uint32 values
    band_keys: tuple[int, ...]  # one signed 64-bit key per band

    def values(self) -> np.ndarray:
        return np.frombuffer(self.signature, dtype="<u4")


@dataclass(frozen=True, slots=True)
class StoryRoot:
    story_id: str  # = the root article's article_id
    fingerprint: Fingerprint
    first_seen_at: datetime  # the root's, for the story window


@dataclass(frozen=True, slots=True)
class Article:
    """One row of `articles`: a normalized, dated article ready to load."""

    article_id: str
    url: str  # canonical URL; for an item without a link, its key (FeedEntry.canonical_link)
    source: str
    title: str | None
    author: str | None
    published_at: datetime
    published_date: date
    date_source: str  # 'feed' | 'page' | 'first_seen'
    date_note: str | None  # why a candidate date was rejected, if one was
    language: str | None
    body: str
    body_source: str  # 'page' | 'feed'
    body_note: str | None  # why the page body was not used, if it was not
    word_count: int
    content_hash: str
    first_seen_at: datetime
    run_id: str
    extractor: str
    # Near-duplicate clustering (transforms.stories), set just before loading.
    fingerprint: Fingerprint | None = None
    story_id: str | None = None  # the story's root article; = article_id for a root
    duplicate_of: str | None = None  # the root, for every member but the root
    story_similarity: float | None = None  # estimated Jaccard with the root
    # Where the page is in the raw WARC archive (set by the flow after archiving).
    warc_file: str | None = None
    warc_offset: int | None = None
    published_raw: str | None = None  # the feed's date string when no parser could read it


@dataclass(frozen=True, slots=True)
class Sighting:
    """A feed carrying an article: every (feed, entry URL) is kept once."""

    article_id: str
    source: str
    url: str  # the entry link as the feed gave it, tracking parameters and all
    canonical_link: str
    guid: str | None
    seen_at: datetime
    run_id: str


@dataclass(frozen=True, slots=True)
class Failure:
    """Something that did not become a row, and why."""

    run_id: str
    stage: str
    url: str | None  # a URL, or None (an item without a link); never a title
    source: str | None
    reason: str
    error: str
    at: datetime
    transient: bool = False
    # 'feed_fallback': the article was still loaded from the feed's text;
    # 'not_loaded': nothing was loaded for this URL.
    outcome: str = "not_loaded"


def failure_of(error: NewsdeskError, *, run_id: str, source: str | None, at: datetime, outcome: str) -> Failure:
    """The `failures` row of a `transforms.errors.NewsdeskError`."""
    return Failure(run_id=run_id, stage=error.stage, url=error.url, source=source, reason=error.reason,
                   error=error.message, at=at, transient=error.transient, outcome=outcome)


@dataclass(frozen=True, slots=True)
class SourceState:
    """What one poll of a feed taught us about it: the `sources` row's update."""

    name: str
    fetched_at: datetime
    status: int | None
    ok: bool
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    title: str | None = None
    next_attempt_at: datetime | None = None  # when a failing feed is polled again
    warning: str | None = None  # a readable feed's problem (encoding, ill-formed XML): sources.last_warning
    # A readable feed's schedule (transforms/schedule.py); None on a failure.
    next_poll_at: datetime | None = None
    poll_interval_s: int | None = None
    poll_reason: str | None = None


@dataclass(frozen=True, slots=True)
class FeedPoll:
    """One `feed_polls` row: a feed fetched in a run, and what it held."""

    run_id: str
    source: str
    fetched_at: datetime
    status: int | None
    ok: bool
    not_modified: bool
    error: str | None
    entries: int
    new_entries: int
    warning: str | None = None  # what was wrong with a feed that could still be read (ParsedFeed.warning)


@dataclass(frozen=True, slots=True)
class KnownKeys:
    """What the warehouse already holds, for the duplicate decisions.

    Maps each key to the article it belongs to; built by `warehouse.queries`.
    """

    by_url: dict[str, str] = field(default_factory=dict)
    by_hash: dict[str, str] = field(default_factory=dict)
    by_guid: dict[str, str] = field(default_factory=dict)  # globally unique GUIDs only
    # (source, canonical_link) and (source, guid) pairs already sighted.
    sighted_links: frozenset[tuple[str, str]] = frozenset()
    sighted_guids: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class PageAttempt:
    """An entry whose page is not loaded: pending a retry, failed or given up."""

    entry: FeedEntry
    article_id: str | None  # the feed-text article loaded meanwhile, if any
    status: str  # 'pending' | 'failed' | 'given_up'
    attempts: int
    last_reason: str
    last_error: str
    first_failed_at: datetime
    last_attempt_at: datetime
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class RegistryFeed:
    """A feed of the warehouse's registry (from OPML or a sources file)."""

    name: str
    url: str
    title: str | None = None
    html_url: str | None = None
    language: str | None = None
    tags: tuple[str, ...] = ()
    origin: str = "opml"  # 'opml' | 'sources file'
