"""Page decisions: what a fetched and extracted page becomes.

After extraction each page is one of: an article from its own text; an
article from the feed's text with a failure saying why the page was not
used; nothing loaded, with a failure and perhaps a retry in a later run; or,
for a retried page, an upgrade of the feed-text article loaded meanwhile.
Pure: the warehouse lookups and the load happen in `flows.pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Mapping, Sequence

from transforms.errors import ExtractError, StageError
from transforms.records import Article, Failure, FeedEntry, PageAttempt, failure_of
from transforms.retries import RetryPolicy, next_page_attempt


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """One page after fetch and extraction, as plain values."""

    entries: tuple[FeedEntry, ...]  # the entries that share this page's link; the first was fetched
    article: Article | None  # from the page, or from the feed's text when the page was not used
    problem: StageError | None  # why there is no page article (fetch or extract error)
    retry: PageAttempt | None = None  # set when this page was a retry from an earlier run
    archived: tuple[str, int] | None = None  # (WARC file, offset) of the response


@dataclass(slots=True)
class PageTriage:
    built: list[tuple[tuple[FeedEntry, ...], Article]] = field(default_factory=list)  # to dedupe and load
    failures: list[Failure] = field(default_factory=list)
    upgrades: list[Article] = field(default_factory=list)  # page articles replacing feed-text ones, by id
    settled: list[tuple[str, str]] = field(default_factory=list)  # (source, canonical_link) retries now done
    unfinished: list[tuple[PageOutcome, Article | None, StageError]] = field(default_factory=list)
    from_retry: set[str] = field(default_factory=set)  # article ids counted as retries, not new entries
    retries: int = 0
    retries_loaded: int = 0


def triage_pages(pages: Sequence[PageOutcome], *, run_id: str, now: datetime) -> PageTriage:
    out = PageTriage()
    for page in pages:
        entry, article, problem = page.entries[0], page.article, page.problem
        if article is not None and article.body_source == "page" and page.archived:
            article = replace(article, warc_file=page.archived[0], warc_offset=page.archived[1])
        fell_back = article is not None and article.body_source == "feed"
        reason = problem.reason if problem else (article.body_note if article is not None and fell_back else None)
        if page.retry is not None:
            out.retries += 1
        if reason is None:  # the page body made it
            if article is None:  # extraction gives an article or the problem that prevented it, never neither
                raise ValueError(f"page {entry.link}: neither an article nor a problem")
            if page.retry is not None:
                out.retries_loaded += 1
                out.settled.extend((e.source, e.canonical_link) for e in page.entries)
                if page.retry.article_id:
                    out.upgrades.append(replace(article, article_id=page.retry.article_id))
                    continue
                out.from_retry.add(article.article_id)
            out.built.append((page.entries, article))
            continue
        # A page whose text was not used (bot wall, paywall ...) is an extract-stage problem.
        problem = problem or ExtractError(entry.link, reason, f"page text not used: {reason}")
        out.failures.append(failure_of(problem, run_id=run_id, source=entry.source, at=now,
                                       outcome="feed_fallback" if article is not None else "not_loaded"))
        if page.retry is None and article is not None:
            out.built.append((page.entries, article))
        out.unfinished.append((page, article, problem))
    return out


@dataclass(slots=True)
class AttemptPlan:
    attempts: list[PageAttempt] = field(default_factory=list)  # rows for page_attempts
    entries_pending: int = 0  # new entries with nothing loaded, to be retried
    entries_failed: int = 0  # new entries with nothing loaded, for good


def plan_attempts(unfinished: Sequence[tuple[PageOutcome, Article | None, StageError]],
                  article_of: Mapping[tuple[str, str], str], now: datetime, policy: RetryPolicy) -> AttemptPlan:
    """The retry bookkeeping of the pages not loaded from their own text.
    `article_of` maps (source, canonical_link) to the article the entry's
    feed text became, if it became one."""
    out = AttemptPlan()
    for page, article, problem in unfinished:
        if page.retry is not None:
            tries = page.retry.attempts + 1
            status, next_at = next_page_attempt(problem.transient, tries, now, policy)
            out.attempts.append(replace(page.retry, status=status, attempts=tries, last_reason=problem.reason,
                                        last_error=problem.message, last_attempt_at=now, next_attempt_at=next_at))
            continue
        if article is not None and not problem.transient:
            continue  # loaded from the feed for good: nothing left to try
        status, next_at = next_page_attempt(problem.transient, 1, now, policy)
        if article is None:
            if status == "pending":
                out.entries_pending += len(page.entries)
            else:
                out.entries_failed += len(page.entries)
        for e in page.entries:
            out.attempts.append(PageAttempt(
                entry=e, article_id=article_of.get((e.source, e.canonical_link)), status=status, attempts=1,
                last_reason=problem.reason, last_error=problem.message, first_failed_at=now, last_attempt_at=now,
                next_attempt_at=next_at,
            ))
    return out
