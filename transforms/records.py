"""Typed records that cross the package boundaries.

Feed entries come out of `transforms.feeds`, pages out of `transforms.articles`;
`Article`, `Sighting` and `Failure` are what `warehouse` loads. All are frozen:
a record is built once, in a transform, and never patched on the way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any, Mapping, Sequence

import numpy as np

from transforms.errors import ParseError, StageError


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


def failure_of(error: StageError, *, run_id: str, source: str | None, at: datetime, outcome: str) -> Failure:
    """The `failures` row of a `transforms.errors.StageError`."""
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

    Maps each key to the article it belongs to; built by `warehouse.lookups`.
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


@dataclass(frozen=True, slots=True)
class BatchRows:
    """What one batch of pages leaves in the warehouse, loaded in one
    transaction (`warehouse.article_rows.load_batch`)."""

    articles: Sequence[Article] = ()
    sightings: Sequence[Sighting] = ()
    failures: Sequence[Failure] = ()
    attempts: Sequence[PageAttempt] = ()  # upserted into page_attempts
    upgrades: Sequence[Article] = ()  # feed-text articles whose page has now come: same article_id, new body
    settled: Sequence[tuple[str, str]] = ()  # (source, canonical_link) that leave page_attempts
    dequeued: Sequence[tuple[str, str]] = ()  # (source, canonical_link) that leave entry_outbox


@dataclass(frozen=True, slots=True)
class PollRows:
    """What a batch of feed polls leaves in the warehouse, recorded in one
    transaction (`warehouse.feed_registry.record_polls`): the validators
    are never stored without the entries they stand for."""

    states: Sequence[SourceState] = ()  # each feed's new state: validators, backoff, next poll
    polls: Sequence[FeedPoll] = ()
    queued: Sequence[FeedEntry] = ()  # new entries, into entry_outbox
    sightings: Sequence[Sighting] = ()  # entries of articles already held
    failures: Sequence[Failure] = ()


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What a run, or one unit of its work (a batch of feeds, of pages),
    counted. The one list of run counters: units return them, the run adds
    them up (`+`), the `runs` row stores the fields marked stored
    (`RUN_COLUMNS`, checked against the table by a test), the CLI prints them
    and the report shows them."""

    feeds_total: int = 0
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    feeds_skipped: int = 0  # backing off after failures
    feeds_not_due: int = 0  # healthy, their next poll later (transforms/schedule.py)
    feeds_elsewhere: int = 0  # due, but polled by another worker of the lake
    entries_seen: int = 0
    entries_known: int = 0  # entries their feed had shown before: skipped
    entries_failed: int = 0
    entries_pending: int = 0  # no row yet: retried in a later run
    articles_new: int = 0
    articles_from_feed: int = 0
    duplicates: int = 0  # entries of an article already held (in the warehouse or this run)
    near_duplicates: int = 0  # of articles_new, joined an existing story
    failures: int = 0
    pages_fetched: int = 0
    retries: int = 0  # pending pages tried again
    retries_loaded: int = 0  # of which now loaded (new or upgraded)
    # Pages not started before [pipeline] max_run_s: left for the next run.
    # Not stored: their entries are in entries_pending.
    deferred_pages: int = field(default=0, metadata={"stored": False})
    # Seconds per stage; fetching overlaps extraction, so they add up to more than the wall time.
    fetch_s: float = 0.0  # feeds and pages over HTTP / from files
    parse_s: float = 0.0  # feedparser
    extract_s: float = 0.0  # trafilatura, normalization, fingerprints (worker processes' CPU)
    dedupe_s: float = 0.0  # duplicate decisions: known-entry lookups, exact duplicates, story clustering
    load_s: float = 0.0  # the load transactions
    failure_reasons: dict[str, int] = field(default_factory=dict, metadata={"stored": False})

    def __add__(self, other: RunCounts) -> RunCounts:
        added = {name: getattr(self, name) + getattr(other, name) for name in _ADDED}
        return RunCounts(**added, failure_reasons=dict(Counter(self.failure_reasons) + Counter(other.failure_reasons)))

    @staticmethod
    def of_summary(summary: Mapping[str, Any]) -> RunCounts:
        """The counts of a run's summary as the flow returns it (a dict:
        its run_id and warehouse beside the counts)."""
        return RunCounts(**{f.name: summary[f.name] for f in fields(RunCounts)})

    @staticmethod
    def of_failures(failures: Sequence[Failure]) -> RunCounts:
        """The `failures` count and `failure_reasons` of these failure rows."""
        return RunCounts(failures=len(failures), failure_reasons=dict(Counter(f.reason for f in failures)))


_ADDED = tuple(f.name for f in fields(RunCounts) if f.name != "failure_reasons")
# The counts a `runs` row stores, in this order (warehouse/run_rows.py).
RUN_COLUMNS = tuple(f.name for f in fields(RunCounts) if f.metadata.get("stored", True))
