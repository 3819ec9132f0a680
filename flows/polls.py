"""Feed polling: fetch the due feeds (conditional GET), parse them, and
record what each poll taught us; then the outbox of new entries becomes the
page jobs of the run.

The decisions (which feeds are due, what a failed or 304 poll means, which
entries are new) are pure functions in `transforms.polls` and
`transforms.dedupe`; this module does the I/O around them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows import progress
from flows.clock import utc_now
from flows.conflicts import retrying
from flows.context import RunContext
from flows.crashpoints import crash_point
from flows.fetch import Fetcher, Response
from flows.pipeline import Job
from flows.settings import FeedSettings
from transforms.dedupe import plan_entries, sighting
from transforms.errors import FetchError, ParseError, StageError
from transforms.feeds import parse_feed
from transforms.polls import PolledFeed, readable_polls, triage_polls
from transforms.records import BatchRows, FeedEntry, ParsedFeed, PollRows, RunCounts, failure_of
from transforms.schedule import cache_max_age, due_feeds, next_poll
from warehouse import article_rows, feed_registry, lookups, outbox
from warehouse.connection import connect
from warehouse.feed_registry import FeedState
from warehouse.twophase import alive, is_lake, keyed_dsn

_FEED_ACCEPT = ("application/rss+xml,application/atom+xml,application/rdf+xml,application/xml;q=0.9,"
                "text/xml;q=0.9,*/*;q=0.5")


@dataclass(frozen=True, slots=True)
class FeedFetch:
    feed: FeedSettings
    response: Response | None
    error: FetchError | None
    fetched_at: datetime



@task(cache_policy=NO_CACHE)
async def fetch_feeds(fetcher: Fetcher, feeds: Sequence[FeedSettings], validators: dict[str, tuple],
                      clock: Callable[[], datetime] = utc_now) -> list[FeedFetch]:
    """Fetch every feed concurrently, with conditional GET; each stamped by `clock`."""

    async def one(feed: FeedSettings) -> FeedFetch:
        etag, last_modified = validators.get(feed.name, (None, None))
        try:
            resp = await fetcher.get(feed.url, etag=etag, last_modified=last_modified, allow_file=True,
                                     accept=_FEED_ACCEPT)
            return FeedFetch(feed, resp, None, clock())
        except FetchError as exc:
            return FeedFetch(feed, None, exc, clock())

    return list(await asyncio.gather(*(one(f) for f in feeds)))


def _parse_all(fetched: Sequence[FeedFetch]) -> list[PolledFeed]:
    out = []
    for item in fetched:
        resp = item.response
        parsed: ParsedFeed | None = None
        error: StageError | None = item.error
        if resp is not None and not resp.not_modified:
            try:
                parsed = parse_feed(resp.body, source=item.feed.name, url=resp.final_url, headers=resp.headers,
                                    language=item.feed.language)
            except StageError as exc:
                error = exc
            except Exception as exc:  # a parser bug fails this feed, not the run
                error = ParseError(item.feed.url, "parser_crash", f"{type(exc).__name__}: {exc}")
        out.append(PolledFeed(
            name=item.feed.name, fetched_at=item.fetched_at, status=resp.status if resp else None,
            not_modified=bool(resp and resp.not_modified), etag=resp.headers.get("etag") if resp else None,
            last_modified=resp.headers.get("last-modified") if resp else None, parsed=parsed, error=error,
            max_age_s=cache_max_age(resp.headers.get("cache-control")) if resp else None,
        ))
    return out


@task(cache_policy=NO_CACHE)
async def parse_feeds(fetched: Sequence[FeedFetch]) -> list[PolledFeed]:
    """feedparser is CPU-bound (~100 ms per 200 items): keep it off the event loop."""
    return await asyncio.to_thread(_parse_all, fetched)


async def poll_due(ctx: RunContext, feed_state: dict[str, FeedState], *,
                   all_feeds: bool = False) -> frozenset[tuple[str, str]]:
    """Poll the feeds that are due (all of them with `all_feeds`). Alone
    (a file), in one go; with `ctx.leasing` (a lake), a batch at a time, each
    leased so that no other worker polls it. Each batch's counts go to the
    run's tally as it is recorded. Returns, as `poll_feeds`, the (feed, link)
    of the entries found new."""
    logger, leasing, feeds = ctx.logger, ctx.leasing, ctx.settings.feeds
    overrides = {f.name: f.interval_min * 60 for f in feeds if f.interval_min is not None}
    polls_at = {n: next_poll(s.next_poll_at, s.last_fetched_at, overrides.get(n)) for n, s in feed_state.items()}
    plan = due_feeds([f.name for f in feeds], {n: s.next_attempt_at for n, s in feed_state.items()}, polls_at,
                     ctx.started, every_feed=all_feeds)
    for name, until in plan.backing_off:
        logger.info("feed %s is backing off until %s", name, until)
    if plan.not_due:
        first = min(plan.not_due, key=lambda item: item[1])
        logger.info("%d feeds not due yet (the next, %s, at %s)", len(plan.not_due), first[0], first[1])
    ctx.tally.add(RunCounts(feeds_skipped=len(plan.backing_off), feeds_not_due=len(plan.not_due)))
    by_name = {f.name: f for f in feeds}
    if leasing is None:
        found, counts = await poll_feeds(ctx, [by_name[n] for n in plan.due], feed_state)
        ctx.tally.add(counts)
        return found
    from warehouse import leases

    # The state read at the start: a feed polled by another worker since is not leased again.
    remaining = [(n, feed_state[n].last_fetched_at if n in feed_state else None) for n in plan.due]
    found = frozenset()
    try:
        while remaining:
            names = await asyncio.to_thread(leases.lease_feeds, leasing.dsn, remaining, owner=leasing.owner,
                                            lease_s=leasing.lease_s, limit=leasing.batch)
            # None to lease: the rest are polled, or leased by other workers; of a dead
            # one, its leases are freed and leased again here.
            if not names and not await asyncio.to_thread(leases.reclaim_dead, leasing.dsn):
                break
            taken = set(names)
            remaining = [item for item in remaining if item[0] not in taken]
            crash_point("feeds_leased")
            if names:
                logger.info("leased %d due feeds (%d others due when this run began)", len(names), len(remaining))
            batch_found, counts = await poll_feeds(ctx, [by_name[n] for n in names], feed_state)
            found |= batch_found
            ctx.tally.add(counts)
    finally:
        await asyncio.to_thread(leases.release_feeds, leasing.dsn, leasing.owner)
    ctx.tally.add(RunCounts(feeds_elsewhere=len(remaining)))
    if remaining:
        logger.info("%d due feeds were polled by other workers", len(remaining))
    return found


async def poll_feeds(ctx: RunContext, due: Sequence[FeedSettings],
                     feed_state: dict[str, FeedState]) -> tuple[frozenset[tuple[str, str]], RunCounts]:
    """Poll these feeds and record, in one transaction, the polls, the
    feeds' new state and next poll, the failures, the sightings of articles
    already held and the new entries (queued in the outbox for
    `work_outbox`). Returns the (feed, link) of the entries it found new,
    for `work_outbox`, and what it counted."""
    run_id = ctx.run_id
    overrides = {f.name: f.interval_min * 60 for f in due if f.interval_min is not None}
    progress.report("feeds", 0, len(due))
    validators = {name: (state.etag, state.last_modified) for name, state in feed_state.items()}
    clock = time.perf_counter()
    # Prefect unwraps quote() arguments; its typing of a task call does not say so.
    fetched = await fetch_feeds(ctx.fetcher, due, quote(validators), ctx.now)  # type: ignore[call-overload]
    archive = ctx.archive
    if archive is not None:
        await asyncio.to_thread(lambda: [archive.write(f.response) for f in fetched
                                         if f.response is not None and f.response.status == 200])
    fetch_s = time.perf_counter() - clock
    crash_point("feeds_fetched")
    clock = time.perf_counter()
    polled = await parse_feeds(quote(fetched))
    parse_s = time.perf_counter() - clock
    progress.report("feeds", len(due), len(due))

    triage = triage_polls(polled, {n: s.consecutive_failures for n, s in feed_state.items()}, run_id=run_id,
                          policy=ctx.settings.retry.policy(), rule=ctx.settings.schedule.rule(),
                          overrides=overrides,
                          intervals={n: (s.poll_interval_s, s.poll_reason) for n, s in feed_state.items()})
    for poll in polled:
        if poll.error is not None:
            ctx.logger.warning("feed %s failed: %s", poll.name, str(poll.error))
    for name, warning in triage.warnings:  # kept in feed_polls.warning and sources.last_warning
        ctx.logger.warning("feed %s is readable but: %s", name, warning)
    entries = triage.entries

    crash_point("feeds_parsed")
    now = ctx.now()
    clock = time.perf_counter()
    def record():
        with connect(ctx.target) as con:
            plan = plan_entries(entries, lookups.select_known_for_entries(con, entries))
            # Entries of articles we already hold need no fetch: only a sighting.
            stored = [sighting(e, article_id, run_id=run_id, now=now) for e, article_id in plan.of_stored_articles]
            polls = triage.failed_polls + readable_polls(triage, entries, plan.already_seen, run_id=run_id)
            rows = PollRows(states=triage.states, polls=polls, queued=[e for group in plan.to_fetch for e in group],
                            sightings=stored, failures=triage.failures)
            feed_registry.record_polls(con, rows, run_id=run_id, at=now)
        return plan, stored

    plan, stored = retrying(record)
    counts = RunCounts(
        feeds_failed=triage.feeds_failed, feeds_ok=triage.feeds_ok,
        feeds_not_modified=triage.feeds_not_modified, entries_seen=len(entries) + triage.entries_rejected,
        entries_failed=triage.entries_rejected, entries_known=len(plan.already_seen), duplicates=len(stored),
        fetch_s=fetch_s, parse_s=parse_s, dedupe_s=time.perf_counter() - clock,
    ) + RunCounts.of_failures(triage.failures)
    crash_point("polls_recorded")
    # Seen (counted) by this run's polls: on a lake another writer polling the
    # same feed may have queued one of these first, under its run.
    return frozenset((e.source, e.canonical_link) for group in plan.to_fetch for e in group), counts


def work_outbox(ctx: RunContext, *, extra: Sequence[FeedEntry] = (),
                unreadable: Sequence[tuple[str, StageError]] = (),
                polled: frozenset[tuple[str, str]] = frozenset()) -> tuple[list[Job], RunCounts]:
    """The page jobs of the run: every entry in the outbox (this run's polls,
    and what a run that died left), grouped by link, then the retries that
    are due. Entries whose article was stored meanwhile become sightings.
    `extra` entries (from WARC files) are planned alongside, never queued:
    their pages are in the files, not on the network. `unreadable` (source,
    error) pairs are WARC records that could not be read: a failure row each.
    Returns the jobs and what it counted."""
    run_id = ctx.run_id
    now = ctx.now()
    clock = time.perf_counter()
    lost = [failure_of(error, run_id=run_id, source=name, at=now, outcome="not_loaded") for name, error in unreadable]

    def work():
        with connect(ctx.target) as con:
            queued = outbox.select_outbox(con)
            # Workers of a lake each work what they queued, and what dead runs left:
            # not the entries of another live worker (which would fetch each page twice).
            others = {queued_by for _, queued_by in queued if queued_by != run_id}
            live = alive(keyed_dsn(con), sorted(others)) if others and is_lake(con) else set()
            mine = [(e, queued_by) for e, queued_by in queued if queued_by not in live]
            entries = [e for e, _ in mine] + list(extra)
            plan = plan_entries(entries, lookups.select_known_for_entries(con, entries, outbox=False))
            stored = [sighting(e, article_id, run_id=run_id, now=now) for e, article_id in plan.of_stored_articles]
            done = [*plan.already_seen, *(e for e, _ in plan.of_stored_articles)]
            article_rows.load_batch(con, BatchRows(sightings=stored, failures=lost,
                                                   dequeued=[(e.source, e.canonical_link) for e in done]),
                                    run_id=run_id)
            return queued, mine, plan, stored, outbox.select_due_attempts(con, now)

    queued, mine, plan, stored, retries = retrying(work)
    counts = RunCounts(
        # Seen by this run from the outbox: left by a run that did not finish.
        entries_seen=sum(queued_by != run_id and (e.source, e.canonical_link) not in polled
                         for e, queued_by in mine) + len(extra) + len(unreadable),
        # Polled here, queued, and gone from the outbox already: another writer of
        # the lake worked them meanwhile. Known to this run, like a link seen before.
        entries_known=len(polled - {(e.source, e.canonical_link) for e, _ in queued}) + len(plan.already_seen),
        entries_failed=len(unreadable), duplicates=len(stored), dedupe_s=time.perf_counter() - clock,
    ) + RunCounts.of_failures(lost)
    return [(group, None) for group in plan.to_fetch] + [((a.entry,), a) for a in retries], counts
