"""Feed-poll decisions with plain values: failed / 304 / readable polls."""

from datetime import datetime, timedelta, timezone

from tests.transforms.test_articles import entry
from transforms.errors import FetchError, ParseError
from transforms.polls import PolledFeed, readable_polls, triage_polls
from transforms.records import ParsedFeed
from transforms.retries import RetryPolicy

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
POLICY = RetryPolicy(page_attempts=3, page_backoff_s=60, feed_backoff_s=600, max_backoff_s=86_400)


def test_a_failed_poll_backs_off_by_its_consecutive_failures_and_keeps_no_validators():
    polled = [PolledFeed("a", NOW, 503, False, etag='"x"', error=FetchError("https://a/f", "http_503", transient=True))]
    triage = triage_polls(polled, {"a": 2}, run_id="r", policy=POLICY)
    (state,) = triage.states
    assert not state.ok and state.etag is None and state.next_attempt_at == NOW + timedelta(minutes=40)
    assert (triage.feeds_failed, triage.feeds_ok) == (1, 0)
    (failure,) = triage.failures
    assert (failure.stage, failure.reason, failure.source, failure.transient) == ("fetch", "http_503", "a", True)
    (poll,) = triage.failed_polls
    assert not poll.ok and poll.entries == 0 and "http_503" in poll.error
    assert triage.entries == [] and triage.readable == []


def test_a_parse_error_is_a_failed_poll_of_a_feed_that_answered():
    polled = [PolledFeed("a", NOW, 200, False, error=ParseError("https://a/f", "not_a_feed"))]
    triage = triage_polls(polled, {}, run_id="r", policy=POLICY)
    assert triage.states[0].status == 200 and not triage.states[0].ok
    assert triage.states[0].next_attempt_at == NOW + timedelta(minutes=10)  # first failure
    assert triage.failures[0].stage == "parse"


def test_readable_polls_give_entries_validators_warnings_and_rejections():
    e1, e2 = entry(source="a", canonical_link="https://x/1"), entry(source="a", canonical_link="https://x/2")
    parsed = ParsedFeed("a", "https://a/f", "Feed A", None, (e1, e2), warning="undefined entity",
                        rejected=((None, "entry has no link and no text"),))
    polled = [PolledFeed("a", NOW, 200, False, etag='"v2"', last_modified="Mon", parsed=parsed),
              PolledFeed("b", NOW, 304, True)]
    triage = triage_polls(polled, {"a": 3}, run_id="r", policy=POLICY)
    assert triage.entries == [e1, e2]
    assert (triage.feeds_ok, triage.feeds_not_modified, triage.entries_rejected) == (2, 1, 1)
    a, b = triage.states
    assert a.ok and a.etag == '"v2"' and a.title == "Feed A" and a.next_attempt_at is None
    assert b.ok and b.etag is None  # a 304 carries no validators: the warehouse keeps the old ones
    assert triage.warnings == [("a", "undefined entity")]
    assert [(f.reason, f.stage, f.url) for f in triage.failures] == [("no_link", "parse", None)]
    # The warning stays with the poll and the feed; a 304 read nothing and has none.
    assert (a.warning, b.warning) == ("undefined entity", None)
    rows = readable_polls(triage, triage.entries, [e2], run_id="r")
    assert [(p.source, p.entries, p.new_entries, p.not_modified, p.warning) for p in rows] == [
        ("a", 2, 1, False, "undefined entity"), ("b", 0, 0, True, None)]
