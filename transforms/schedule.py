"""How often each feed is polled: pure decisions, the clock an argument.

A feed's interval comes from how much it publishes (the time its entries of
the last week span, divided by their number: a week over its weekly entries,
as Miniflux's entry-frequency scheduler and Media Cloud's rss-fetcher do),
clamped to the operator's bounds, and is never shorter than what the publisher asked for: RSS `<ttl>`,
`sy:updatePeriod`/`sy:updateFrequency`, the response's `Cache-Control:
max-age`. A feed's own `interval_min` overrides all of it. Failing feeds are
not scheduled here: they back off (transforms/retries.py
`next_feed_attempt`), no sooner than their Retry-After.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Sequence

WEEK_S = 7 * 86_400
# A publisher's hint longer than this is read as a mistake, not a wish.
LONGEST_HINT_S = WEEK_S

_PERIODS = {"hourly": 3_600, "daily": 86_400, "weekly": WEEK_S, "monthly": 30 * 86_400, "yearly": 365 * 86_400}


@dataclass(frozen=True, slots=True)
class ScheduleRule:
    """The operator's bounds ([schedule] in the sources file), in seconds."""

    min_s: int = 300
    max_s: int = 86_400
    default_s: int = 3_600  # a feed whose entries carry no dates


@dataclass(frozen=True, slots=True)
class FeedHints:
    """What one readable poll says about when to come back."""

    entry_dates: tuple[datetime, ...] = ()  # the dates of the document's entries
    ttl_min: int | None = None  # RSS <ttl>
    update_period: str | None = None  # sy:updatePeriod
    update_frequency: int | None = None  # sy:updateFrequency (times per period)
    max_age_s: int | None = None  # Cache-Control: max-age of the response


@dataclass(frozen=True, slots=True)
class PollInterval:
    seconds: int
    reason: str  # shown in the run report and feed_health

    def next_at(self, polled_at: datetime) -> datetime:
        return polled_at + timedelta(seconds=self.seconds)


def publishing_rate(dates: Iterable[datetime], now: datetime) -> tuple[int, float] | None:
    """(entries dated within the last week, the seconds they span), or None
    if none is. A feed shows only its latest items: thirty items of the last
    thirty hours are a rate of one an hour, not thirty a week. The span is
    at least an hour, and a lone item's at least a day, so that one fresh
    item does not read as a torrent. Dates in the future count as now."""
    since = now - timedelta(seconds=WEEK_S)
    recent = [min(d, now) for d in dates if d >= since]
    if not recent:
        return None
    return len(recent), max((now - min(recent)).total_seconds(), 3_600.0 if len(recent) > 1 else 86_400.0)


def _span(seconds: float) -> str:
    hours = seconds / 3_600
    return f"{hours:.0f} h" if hours <= 48 else f"{hours / 24:.0f} days"


def publisher_floor(hints: FeedHints) -> tuple[int, str] | None:
    """The longest wait the publisher asked for, with its name, if any."""
    asked = []
    if hints.ttl_min and hints.ttl_min > 0:
        asked.append((hints.ttl_min * 60, f"<ttl> {hints.ttl_min} min"))
    update_period = (hints.update_period or "").strip().lower()
    period = _PERIODS.get(update_period)
    if period:
        frequency = hints.update_frequency if hints.update_frequency and hints.update_frequency > 0 else 1
        asked.append((period // frequency, f"sy:updatePeriod {update_period}"
                      + (f" x{frequency}" if frequency > 1 else "")))
    if hints.max_age_s and hints.max_age_s > 0:
        asked.append((hints.max_age_s, f"Cache-Control max-age {hints.max_age_s} s"))
    if not asked:
        return None
    seconds, why = max(asked)
    return min(seconds, LONGEST_HINT_S), why


def overridden(override_s: int) -> PollInterval:
    """A feed's own interval_min: it wins over history, bounds and hints."""
    return PollInterval(override_s, "every run (interval_min = 0)" if override_s == 0
                        else f"interval_min = {override_s // 60}")


def poll_interval(hints: FeedHints, now: datetime, rule: ScheduleRule) -> PollInterval:
    """The interval until a readable feed's next poll, and why."""
    rate = publishing_rate(hints.entry_dates, now)
    if rate is not None:
        count, span_s = rate
        seconds, reason = int(span_s // count), f"{count} entries in {_span(span_s)}"
    elif hints.entry_dates:
        seconds, reason = rule.max_s, "no entry in the last week"
    else:
        seconds, reason = rule.default_s, "no dated entries"
    if seconds < rule.min_s:
        seconds, reason = rule.min_s, f"{reason}, raised to min_interval_min"
    elif seconds > rule.max_s:
        seconds, reason = rule.max_s, f"{reason}, lowered to max_interval_min"
    floor = publisher_floor(hints)
    if floor is not None and floor[0] > seconds:
        seconds, reason = floor[0], f"{floor[1]} (would be {reason})"
    return PollInterval(seconds, reason)


def kept_interval(previous_s: int | None, reason: str | None, max_age_s: int | None,
                  rule: ScheduleRule) -> PollInterval:
    """A 304 shows no entries: the feed keeps the interval it had (or the
    default), no shorter than the response's max-age."""
    seconds = previous_s if previous_s is not None else rule.default_s
    why = reason or "no dated entries"
    if seconds < rule.min_s:  # an interval_min = 0 since removed: back within the bounds
        seconds, why = rule.min_s, f"{why}, raised to min_interval_min"
    if max_age_s and max_age_s > seconds:
        seconds, why = min(max_age_s, LONGEST_HINT_S), f"Cache-Control max-age {max_age_s} s"
    return PollInterval(seconds, why)


def cache_max_age(cache_control: str | None) -> int | None:
    """max-age of a Cache-Control header, in seconds (s-maxage is for
    shared caches, which a poller is not)."""
    if not cache_control:
        return None
    found = re.findall(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", cache_control.lower())
    return max(int(v) for v in found) if found else None


def next_poll(stored: datetime | None, last_polled: datetime | None, override_s: int | None) -> datetime | None:
    """When a healthy feed is due. A feed's own interval_min applies at
    once, even to a feed scheduled before it was set."""
    if override_s is not None and last_polled is not None:
        return last_polled + timedelta(seconds=override_s)
    return stored


@dataclass(frozen=True, slots=True)
class Due:
    """Which feeds a run polls now, and why the others wait."""

    due: list[str]
    backing_off: list[tuple[str, datetime]]  # failing feeds, until
    not_due: list[tuple[str, datetime]]  # healthy feeds, next poll at


def due_feeds(names: Sequence[str], next_attempt_at: Mapping[str, datetime | None],
              next_poll_at: Mapping[str, datetime | None], now: datetime, *, every_feed: bool = False) -> Due:
    """The feeds to poll now, in the given order. `every_feed` polls all of
    them, backing off or not (`ingest --all-feeds`)."""
    if every_feed:
        return Due(list(names), [], [])
    due, backing_off, not_due = [], [], []
    for name in names:
        until = next_attempt_at.get(name)
        if until is not None and until > now:
            backing_off.append((name, until))
            continue
        at = next_poll_at.get(name)
        if at is not None and at > now:
            not_due.append((name, at))
            continue
        due.append(name)
    return Due(due, backing_off, not_due)
