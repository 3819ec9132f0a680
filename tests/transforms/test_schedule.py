"""Each feed's schedule, with plain values and the clock as an argument."""

from datetime import datetime, timedelta, timezone

import pytest

from tests.transforms.test_articles import entry
from transforms.errors import FetchError
from transforms.polls import PolledFeed, triage_polls
from transforms.records import ParsedFeed
from transforms.retries import RetryPolicy
from transforms.schedule import (
    FeedHints,
    ScheduleRule,
    cache_max_age,
    due_feeds,
    kept_interval,
    next_poll,
    poll_interval,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
RULE = ScheduleRule(min_s=300, max_s=86_400, default_s=3_600)
POLICY = RetryPolicy(page_attempts=3, page_backoff_s=60, feed_backoff_s=600, max_backoff_s=86_400)


def _dates(n: int, span_h: float, *, ago_h: float = 0) -> tuple[datetime, ...]:
    """n entry dates, the newest `ago_h` hours ago, the oldest `span_h` before it."""
    newest = NOW - timedelta(hours=ago_h)
    return tuple(newest - timedelta(hours=span_h * i / max(n - 1, 1)) for i in range(n))


@pytest.mark.parametrize("hints, seconds, reason", [
    # The span of the last week's entries over their number.
    (FeedHints(_dates(7, 168)), 86_400, "7 entries in 7 days"),
    (FeedHints(_dates(169, 168)), 3_578, "169 entries in 7 days"),
    (FeedHints(_dates(31, 30)), 3_483, "31 entries in 30 h"),  # a feed shows its latest items only
    (FeedHints(_dates(1, 0)), 86_400, "1 entries in 24 h"),  # one fresh item: a day at least
    (FeedHints(_dates(30, 2.9)), 348, "30 entries in 3 h"),  # a busy feed showing its last 3 hours
    (FeedHints(_dates(2, 0.1)), 1_800, "2 entries in 1 h"),  # two fresh items: an hour at least
    # Clamped to the bounds.
    (FeedHints(_dates(5_000, 24)), 300, "5000 entries in 24 h, raised to min_interval_min"),
    (FeedHints(_dates(2, 160)), 86_400, "2 entries in 7 days, lowered to max_interval_min"),
    # Dated, but nothing in the last week: the longest; undated: the default.
    (FeedHints(_dates(3, 48, ago_h=24 * 30)), 86_400, "no entry in the last week"),
    (FeedHints(()), 3_600, "no dated entries"),
    # The publisher's wishes are a floor, and win over the clamp.
    (FeedHints(_dates(49, 48), ttl_min=120), 7_200, "<ttl> 120 min (would be 49 entries in 48 h)"),
    (FeedHints(_dates(49, 48), ttl_min=30), 3_526, "49 entries in 48 h"),
    (FeedHints(_dates(49, 48), update_period="daily", update_frequency=4), 21_600,
     "sy:updatePeriod daily x4 (would be 49 entries in 48 h)"),
    (FeedHints(_dates(7, 168), update_period="weekly"), 604_800,
     "sy:updatePeriod weekly (would be 7 entries in 7 days)"),
    (FeedHints(_dates(49, 48), max_age_s=5_400), 5_400,
     "Cache-Control max-age 5400 s (would be 49 entries in 48 h)"),
    (FeedHints(_dates(49, 48), ttl_min=60 * 24 * 365), 604_800,
     "<ttl> 525600 min (would be 49 entries in 48 h)"),
])
def test_the_interval_comes_from_the_history_within_bounds_and_never_under_the_publishers_floor(
        hints, seconds, reason):
    got = poll_interval(hints, NOW, RULE)
    assert (got.seconds, got.reason) == (seconds, reason)
    assert got.next_at(NOW) == NOW + timedelta(seconds=seconds)


def test_entries_dated_in_the_future_count_as_now():
    got = poll_interval(FeedHints(tuple(NOW + timedelta(days=d) for d in range(24))), NOW, RULE)
    assert (got.seconds, got.reason) == (300, "24 entries in 1 h, raised to min_interval_min")


def test_a_304_keeps_the_interval_it_had_under_its_max_age():
    assert kept_interval(7_200, "84 entries in the last week", None, RULE).seconds == 7_200
    assert kept_interval(None, None, None, RULE).reason == "no dated entries"
    longer = kept_interval(600, "x", 3_600, RULE)
    assert (longer.seconds, longer.reason) == (3_600, "Cache-Control max-age 3600 s")
    # Once polled every run, then the override removed: a 304 does not keep it at 0.
    assert kept_interval(0, "every run (interval_min = 0)", None, RULE).seconds == 300


@pytest.mark.parametrize("header, seconds", [
    ("max-age=300", 300), ("public, max-age=600, must-revalidate", 600), ('max-age="90"', 90),
    ("s-maxage=600", None), ("no-cache", None), (None, None), ("MAX-AGE=60", 60),
])
def test_cache_control_max_age(header, seconds):
    assert cache_max_age(header) == seconds


def test_due_feeds_wait_for_their_backoff_and_their_next_poll():
    later, earlier = NOW + timedelta(minutes=5), NOW - timedelta(minutes=5)
    due = due_feeds(["a", "b", "c", "d", "e"], {"a": later, "b": earlier}, {"c": later, "d": NOW, "b": later}, NOW)
    assert due.due == ["d", "e"]  # due at its time exactly; never polled
    assert due.backing_off == [("a", later)]
    assert due.not_due == [("b", later), ("c", later)]  # b's backoff is over, its next poll is not
    every = due_feeds(["a", "b", "c"], {"a": later}, {"c": later}, NOW, every_feed=True)
    assert (every.due, every.backing_off, every.not_due) == (["a", "b", "c"], [], [])


def test_a_feeds_own_interval_applies_at_once():
    stored = NOW + timedelta(hours=20)
    assert next_poll(stored, NOW - timedelta(hours=4), None) == stored
    assert next_poll(stored, NOW - timedelta(hours=4), 0) == NOW - timedelta(hours=4)
    assert next_poll(None, None, 600) is None  # never polled: due


def _feed(entries, **kw) -> ParsedFeed:
    return ParsedFeed(source="a", url="https://a/f", title=None, language=None, entries=tuple(entries), **kw)


def test_a_readable_poll_is_scheduled_and_a_failed_one_backs_off_no_sooner_than_retry_after():
    fresh = [entry(link=f"https://a/{i}", canonical_link=f"https://a/{i}", source="a",
                   published_at=NOW - timedelta(hours=i)) for i in range(28)]
    polled = [
        PolledFeed("a", NOW, 200, False, parsed=_feed(fresh, ttl_min=10)),
        PolledFeed("b", NOW, 304, True, max_age_s=None),
        PolledFeed("c", NOW, 503, False, error=FetchError("https://c/f", "http_503", transient=True,
                                                          retry_after=7_200)),
        PolledFeed("d", NOW, 503, False, error=FetchError("https://d/f", "http_503", transient=True,
                                                          retry_after=10**9)),
    ]
    triage = triage_polls(polled, {}, run_id="r", policy=POLICY, rule=RULE,
                          intervals={"b": (7_200, "84 entries in the last week")})
    a, b, c, d = triage.states
    assert (a.poll_interval_s, a.poll_reason, a.next_poll_at) == (3_471, "28 entries in 27 h",
                                                                   NOW + timedelta(seconds=3_471))
    assert (b.poll_interval_s, b.poll_reason) == (7_200, "84 entries in the last week")
    assert c.next_attempt_at == NOW + timedelta(hours=2)  # not the 10 min of a first failure
    assert d.next_attempt_at == NOW + timedelta(days=1)  # capped at max_backoff_s
    assert c.next_poll_at is None and c.poll_interval_s is None  # a failure leaves the schedule alone


def test_a_feeds_own_interval_wins_over_history_hints_and_a_304():
    busy = [entry(link=f"https://a/{i}", canonical_link=f"https://a/{i}", source="a",
                  published_at=NOW - timedelta(hours=i)) for i in range(28)]
    polled = [PolledFeed("a", NOW, 200, False, parsed=_feed(busy, ttl_min=600)),
              PolledFeed("b", NOW, 304, True, max_age_s=7_200),
              PolledFeed("c", NOW, 200, False, parsed=_feed(busy))]
    triage = triage_polls(polled, {}, run_id="r", policy=POLICY, rule=RULE, overrides={"a": 0, "b": 0, "c": 600},
                          intervals={"b": (7_200, "84 entries in 7 days")})
    assert [(s.poll_interval_s, s.poll_reason) for s in triage.states] == [
        (0, "every run (interval_min = 0)"), (0, "every run (interval_min = 0)"), (600, "interval_min = 10")]
    assert triage.states[0].next_poll_at == NOW
