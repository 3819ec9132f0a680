"""Feed-poll decisions: which feeds are due, and what each poll means.

Pure, like reader's update decider: the flow fetches and parses, then hands
plain values here (the clock included) and gets back the rows to write. A
failing feed is polled less often (backoff up to a day) but never dropped; a
304 keeps the validators it had; a parse error is a failed poll of its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Sequence

from transforms.errors import ParseError, StageError
from transforms.records import (
    Failure,
    FeedEntry,
    FeedPoll,
    ParsedFeed,
    SourceState,
    failure_of,
)
from transforms.retries import RetryPolicy, next_feed_attempt
from transforms.schedule import FeedHints, ScheduleRule, kept_interval, overridden, poll_interval


@dataclass(frozen=True, slots=True)
class PolledFeed:
    """One feed's fetch and parse, as plain values."""

    name: str
    fetched_at: datetime
    status: int | None  # None when nothing answered
    not_modified: bool
    etag: str | None = None
    last_modified: str | None = None
    parsed: ParsedFeed | None = None  # None for a 304 or a failure
    error: StageError | None = None  # the fetch or parse error
    max_age_s: int | None = None  # the response's Cache-Control max-age


@dataclass(slots=True)
class PollTriage:
    """What the polls of a run amount to, before the warehouse is asked
    which entries it knows."""

    entries: list[FeedEntry] = field(default_factory=list)  # from every readable feed, in order
    states: list[SourceState] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)  # failed feeds and rejected entries
    failed_polls: list[FeedPoll] = field(default_factory=list)  # complete: they hold no entries
    readable: list[PolledFeed] = field(default_factory=list)  # 200 or 304: their rows need the plan
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (feed, its encoding guess or what feedparser tolerated)
    feeds_ok: int = 0
    feeds_failed: int = 0
    feeds_not_modified: int = 0
    entries_rejected: int = 0  # entries that could not become an entry at all


def triage_polls(polled: Sequence[PolledFeed], failures_so_far: Mapping[str, int], *, run_id: str,
                 policy: RetryPolicy, rule: ScheduleRule = ScheduleRule(),
                 overrides: Mapping[str, int] = {},
                 intervals: Mapping[str, tuple[int | None, str | None]] = {}) -> PollTriage:
    """Sort each poll into a failed feed (its failure, its backoff, no
    sooner than its Retry-After) or a readable one (its entries, its new
    validators, its next poll: transforms/schedule.py). `overrides` are the
    feeds' own interval_min in seconds; `intervals` what each feed had."""
    out = PollTriage()
    for poll in polled:
        if poll.error is not None:
            out.feeds_failed += 1
            out.failures.append(failure_of(poll.error, run_id=run_id, source=poll.name, at=poll.fetched_at,
                                           outcome="not_loaded"))
            failures = failures_so_far.get(poll.name, 0) + 1
            retry_at = next_feed_attempt(failures, poll.fetched_at, policy,
                                         retry_after_s=getattr(poll.error, "retry_after", None))
            out.states.append(SourceState(poll.name, poll.fetched_at, poll.status, ok=False, error=str(poll.error),
                                          next_attempt_at=retry_at))
            out.failed_polls.append(FeedPoll(run_id=run_id, source=poll.name, fetched_at=poll.fetched_at,
                                             status=poll.status, ok=False, not_modified=False, error=str(poll.error),
                                             entries=0, new_entries=0))
            continue
        out.feeds_ok += 1
        out.readable.append(poll)
        if poll.not_modified:
            out.feeds_not_modified += 1
        elif poll.parsed is not None:
            out.entries.extend(poll.parsed.entries)
            if poll.parsed.warning:
                out.warnings.append((poll.name, poll.parsed.warning))
            for link, why in poll.parsed.rejected:
                out.failures.append(failure_of(ParseError(link, "no_link", why), run_id=run_id, source=poll.name,
                                               at=poll.fetched_at, outcome="not_loaded"))
                out.entries_rejected += 1
            for error in poll.parsed.failed:  # unreadable entries (a malformed link): one failure row each
                out.failures.append(failure_of(error, run_id=run_id, source=poll.name, at=poll.fetched_at,
                                               outcome="not_loaded"))
                out.entries_rejected += 1
        if poll.name in overrides:
            interval = overridden(overrides[poll.name])
        elif poll.parsed is None:  # a 304
            interval = kept_interval(*intervals.get(poll.name, (None, None)), poll.max_age_s, rule)
        else:
            feed = poll.parsed
            hints = FeedHints(entry_dates=tuple(e.published_at for e in feed.entries if e.published_at is not None),
                              ttl_min=feed.ttl_min, update_period=feed.update_period,
                              update_frequency=feed.update_frequency, max_age_s=poll.max_age_s)
            interval = poll_interval(hints, poll.fetched_at, rule)
        out.states.append(SourceState(poll.name, poll.fetched_at, poll.status, ok=True, etag=poll.etag,
                                      last_modified=poll.last_modified,
                                      title=poll.parsed.title if poll.parsed is not None else None,
                                      warning=poll.parsed.warning if poll.parsed is not None else None,
                                      next_poll_at=interval.next_at(poll.fetched_at),
                                      poll_interval_s=interval.seconds, poll_reason=interval.reason))
    return out


def readable_polls(triage: PollTriage, entries: Sequence[FeedEntry], already_seen: Sequence[FeedEntry], *,
                   run_id: str) -> list[FeedPoll]:
    """The `feed_polls` rows of the readable feeds: entries each carried, and
    how many of them the feed had not shown before."""
    in_feed = Counter(e.source for e in entries)
    seen_before = Counter(e.source for e in already_seen)
    return [FeedPoll(run_id=run_id, source=p.name, fetched_at=p.fetched_at, status=p.status, ok=True,
                     not_modified=p.not_modified, error=None, entries=in_feed[p.name],
                     new_entries=in_feed[p.name] - seen_before[p.name],
                     warning=p.parsed.warning if p.parsed is not None else None)
            for p in triage.readable]
