"""Page decisions with plain values: article, feed fallback, retry, upgrade."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from tests.transforms.test_articles import entry
from transforms.errors import ExtractError, FetchError
from transforms.pages import PageOutcome, plan_attempts, triage_pages
from transforms.records import Article, PageAttempt
from transforms.retries import RetryPolicy

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
POLICY = RetryPolicy(page_attempts=3, page_backoff_s=60, feed_backoff_s=600, max_backoff_s=86_400)


def article(article_id: str, body_source: str = "page", note: str | None = None) -> Article:
    return Article(article_id=article_id, url=f"https://x/{article_id}", source="a", title="T", author=None,
                   published_at=NOW, published_date=NOW.date(), date_source="feed", date_note=None, language="en",
                   body="Body text.", body_source=body_source, body_note=note, word_count=2, content_hash=article_id,
                   first_seen_at=NOW, run_id="r", extractor="x")


def attempt(e, article_id=None, attempts=1) -> PageAttempt:
    return PageAttempt(entry=e, article_id=article_id, status="pending", attempts=attempts, last_reason="http_500",
                       last_error="", first_failed_at=NOW - timedelta(hours=1),
                       last_attempt_at=NOW - timedelta(hours=1), next_attempt_at=NOW)


def test_a_page_article_is_built_and_archived_location_attached():
    e = entry()
    triage = triage_pages([PageOutcome((e,), article("p1"), None, archived=("w.warc.gz", 42))], run_id="r", now=NOW)
    ((entries, built),) = triage.built
    assert entries == (e,) and (built.warc_file, built.warc_offset) == ("w.warc.gz", 42)
    assert triage.failures == [] and triage.unfinished == []


def test_a_failed_page_with_feed_text_loads_the_fallback_and_records_why():
    e = entry()
    problem = FetchError(e.link, "http_503", transient=True)
    triage = triage_pages([PageOutcome((e,), article("f1", "feed"), problem)], run_id="r", now=NOW)
    assert [a.article_id for _, a in triage.built] == ["f1"]
    (failure,) = triage.failures
    assert (failure.reason, failure.outcome, failure.transient) == ("http_503", "feed_fallback", True)
    plan = plan_attempts(triage.unfinished, {(e.source, e.canonical_link): "f1"}, NOW, POLICY)
    (row,) = plan.attempts
    assert (row.status, row.article_id, row.next_attempt_at) == ("pending", "f1", NOW + timedelta(seconds=60))
    assert (plan.entries_pending, plan.entries_failed) == (0, 0)  # something was loaded for it


def test_a_page_text_not_used_is_an_extract_failure_and_permanent_fallbacks_are_not_retried():
    e = entry()
    triage = triage_pages([PageOutcome((e,), article("f1", "feed", note="bot_wall"), None)], run_id="r", now=NOW)
    (failure,) = triage.failures
    assert (failure.stage, failure.reason, failure.outcome) == ("extract", "bot_wall", "feed_fallback")
    assert plan_attempts(triage.unfinished, {}, NOW, POLICY).attempts == []


def test_nothing_loaded_counts_pending_or_failed_per_entry():
    e1, e2 = entry(canonical_link="https://x/1"), entry(canonical_link="https://x/1", source="b")
    transient = PageOutcome((e1, e2), None, FetchError(e1.link, "timeout", transient=True))
    permanent = PageOutcome((entry(canonical_link="https://x/3"),), None, FetchError("https://x/3", "http_404"))
    triage = triage_pages([transient, permanent], run_id="r", now=NOW)
    assert triage.built == [] and len(triage.failures) == 2
    plan = plan_attempts(triage.unfinished, {}, NOW, POLICY)
    assert (plan.entries_pending, plan.entries_failed) == (2, 1)
    assert [a.status for a in plan.attempts] == ["pending", "pending", "failed"]


def test_a_retry_that_works_upgrades_the_fallback_article_in_place():
    e = entry()
    retry = attempt(e, article_id="f1")
    triage = triage_pages([PageOutcome((e,), article("p9"), None, retry=retry)], run_id="r", now=NOW)
    assert [u.article_id for u in triage.upgrades] == ["f1"]  # the page's text, under the fallback's id
    assert triage.built == [] and triage.settled == [(e.source, e.canonical_link)]
    assert (triage.retries, triage.retries_loaded) == (1, 1)


def test_a_retry_that_works_with_nothing_loaded_before_is_a_new_article_counted_as_a_retry():
    e = entry()
    triage = triage_pages([PageOutcome((e,), article("p9"), None, retry=attempt(e))], run_id="r", now=NOW)
    assert [a.article_id for _, a in triage.built] == ["p9"] and triage.from_retry == {"p9"}


def test_a_retry_that_fails_again_counts_up_and_gives_up_at_the_limit():
    e = entry()
    problem = FetchError(e.link, "http_500", transient=True)
    triage = triage_pages([PageOutcome((e,), None, problem, retry=attempt(e, attempts=2))], run_id="r", now=NOW)
    assert triage.failures[0].outcome == "not_loaded"
    (row,) = plan_attempts(triage.unfinished, {}, NOW, POLICY).attempts
    assert (row.attempts, row.status, row.next_attempt_at) == (3, "given_up", None)
    again = plan_attempts(triage_pages([PageOutcome((e,), None, ExtractError(e.link, "empty"),
                                                    retry=replace(attempt(e), attempts=1))], run_id="r",
                                       now=NOW).unfinished, {}, NOW, POLICY)
    assert again.attempts[0].status == "failed"  # a permanent error ends the retries at once
