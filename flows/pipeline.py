"""The page stages of a run: fetch, extract, load, in overlapping batches.

Batches go to tasks wrapped in `quote`, so that Prefect does not walk every
page body looking for futures (that walk cost ~2 s per 600 pages). One task
per stage per batch of pages, never one per article: a Prefect task costs
about as much as an extraction. The decisions about each page (article,
fallback, failure, retry, upgrade) are pure functions in `transforms.pages`;
this module fetches, calls them, and loads what they return.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows import progress
from flows.archive import WarcArchive, WarcInput
from flows.conflicts import retrying
from flows.context import RunContext
from flows.crashpoints import crash_point
from flows.extraction import Extracted, ExtractJob, ExtractorPool, JobBatch, extract_many
from flows.fetch import Fetcher, Response
from flows.stories import cluster_new
from transforms.dedupe import resolve_duplicates
from transforms.errors import FetchError, StageError
from transforms.fingerprints import StoryParams
from transforms.pages import PageOutcome, plan_attempts, triage_pages
from transforms.records import BatchRows, FeedEntry, PageAttempt, RunCounts
from transforms.retries import RetryPolicy
from warehouse import article_rows, lookups
from warehouse.connection import Writer

Job = tuple[tuple[FeedEntry, ...], PageAttempt | None]  # entries sharing one link; the retry it is, if one
_FETCH_AHEAD = 2  # batches fetched ahead of extraction


@dataclass(frozen=True, slots=True)
class PageFetch:
    entries: tuple[FeedEntry, ...]  # the entries that share this page's link
    response: Response | None
    error: StageError | None
    retry: PageAttempt | None = None  # set when this is a retry from page_attempts
    archived: tuple[str, int] | None = None  # (WARC file, offset) of the response



def _since(started: float) -> float:
    return time.perf_counter() - started


@task(cache_policy=NO_CACHE)
async def fetch_pages(fetcher: Fetcher, jobs: Sequence[Job], file_sources: frozenset[str]) -> list[PageFetch]:
    """Fetch the page of each group of entries; different hosts in parallel."""

    async def one(group: tuple[FeedEntry, ...], retry: PageAttempt | None) -> PageFetch:
        entry = group[0]
        if entry.link is None:  # an item without a link (not has_link): its article is the feed's text
            return PageFetch(group, None, None, retry)
        try:
            resp = await fetcher.get_page(entry.link, allow_file=entry.source in file_sources)
            return PageFetch(group, resp, None, retry)
        except FetchError as exc:
            return PageFetch(group, None, exc, retry)
        except Exception as exc:  # whatever else one page raises is that page's failure
            return PageFetch(group, None, FetchError(entry.link, "fetch_crash", f"{type(exc).__name__}: {exc}"), retry)

    return list(await asyncio.gather(*(one(g, r) for g, r in jobs)))


def _job(page: PageFetch) -> ExtractJob:
    resp = page.response
    return ExtractJob(
        entry=page.entries[0], body=resp.body if resp else None, content_type=resp.content_type if resp else "",
        charset=resp.charset if resp else None, final_url=resp.final_url if resp else None, problem=page.error,
    )


@task(cache_policy=NO_CACHE)
async def extract_pages(pool: ExtractorPool, pages: Sequence[PageFetch], run_id: str, now: datetime,
                        stories: StoryParams) -> tuple[list[Extracted], float]:
    """HTML → fingerprinted articles, in the worker processes, so that
    fetching and loading go on meanwhile. Also returns the workers' CPU seconds."""
    return await pool.extract([_job(p) for p in pages], run_id, now, stories)


@task(cache_policy=NO_CACHE)
def extract_on_cluster(batch: JobBatch, run_id: str, now: datetime,
                       stories: StoryParams) -> tuple[list[Extracted], float]:
    """The same extraction, as a task the flow's task runner places (a Dask
    worker with `task_runner = "dask"`); the page bytes travel with it."""
    return extract_many(batch.jobs, run_id, now, stories)


@task(cache_policy=NO_CACHE)
async def load_pages(writer: Writer, pages: Sequence[PageFetch], extracted: Sequence[Extracted], run_id: str,
                     now: datetime, policy: RetryPolicy, stories: StoryParams) -> RunCounts:
    """DuckDB work in a thread: the event loop keeps fetching the next batch."""
    return await asyncio.to_thread(settle_batch, writer, pages, extracted, run_id, now, policy, stories)


def settle_batch(writer: Writer, pages: Sequence[PageFetch], extracted: Sequence[Extracted], run_id: str,
                 now: datetime, policy: RetryPolicy, stories: StoryParams) -> RunCounts:
    """Settle every entry of one batch of pages (an article, a sighting, a
    failure or a pending retry): resolve exact duplicates against the
    warehouse, cluster the new articles into stories, and load it all in one
    transaction. A batch that lost a race with another writer of a lake is
    worked out again. Returns what it counted."""
    return retrying(lambda: _settle_batch(writer, pages, extracted, run_id, now, policy, stories))


def _settle_batch(writer: Writer, pages: Sequence[PageFetch], extracted: Sequence[Extracted], run_id: str,
                  now: datetime, policy: RetryPolicy, stories: StoryParams) -> RunCounts:
    triage = triage_pages([PageOutcome(p.entries, article, problem, p.retry, p.archived)
                           for p, (article, problem) in zip(pages, extracted)], run_id=run_id, now=now)
    started = time.perf_counter()
    with writer.session() as con:
        known = lookups.select_known_articles(con, [a.url for _, a in triage.built],
                                              [a.content_hash for _, a in triage.built])
        resolved = resolve_duplicates(triage.built, known, run_id=run_id, now=now)
        articles, near_duplicates = cluster_new(con, resolved.articles, stories)
        article_of = {(s.source, s.canonical_link): s.article_id for s in resolved.sightings}
        attempts = plan_attempts(triage.unfinished, article_of, now, policy)
        loading = time.perf_counter()
        # Every entry of a new page is settled by this batch (an article, a
        # sighting, a failure or a pending retry): it leaves the outbox with it.
        rows = BatchRows(articles=articles, sightings=resolved.sightings, failures=triage.failures,
                         attempts=attempts.attempts, upgrades=triage.upgrades, settled=triage.settled,
                         dequeued=[(e.source, e.canonical_link) for p in pages if p.retry is None for e in p.entries])
        article_rows.load_batch(con, rows, run_id=run_id, before_commit=lambda: crash_point("loading"),
                                between_commits=lambda: crash_point("between_commits"))
    return RunCounts(
        entries_failed=attempts.entries_failed, entries_pending=attempts.entries_pending, retries=triage.retries,
        retries_loaded=triage.retries_loaded,
        articles_new=sum(a.article_id not in triage.from_retry for a in resolved.articles),
        articles_from_feed=sum(a.body_source == "feed" for a in resolved.articles),
        duplicates=resolved.duplicates, near_duplicates=near_duplicates, dedupe_s=loading - started,
        load_s=_since(loading),
    ) + RunCounts.of_failures(triage.failures)


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _archive_pages(archive: WarcArchive, pages: Sequence[PageFetch]) -> list[PageFetch]:
    return [PageFetch(p.entries, p.response, p.error, p.retry, archive.write(p.response))
            if p.response is not None and p.response.status == 200 else p for p in pages]


def _read_archived(batch: Sequence[Job], warc: WarcInput) -> list[PageFetch]:
    pages = []
    for group, retry in batch:
        try:
            response, location = warc.response_for(group[0].canonical_link)
        except Exception as exc:  # read fine while listing, not now (the file changed): this page only
            error = FetchError(group[0].link, "bad_warc_record", f"{type(exc).__name__}: {exc}")
            pages.append(PageFetch(group, None, error, retry))
            continue
        pages.append(PageFetch(group, response, None, retry, archived=location))
    return pages


# A batch on its way: its pages, their extraction, what it counted so far.
_Extraction = tuple[list[PageFetch], list[Extracted], RunCounts]


async def _fetch_batch(ctx: RunContext, batch: Sequence[Job],
                       warc: WarcInput | None) -> tuple[list[PageFetch], RunCounts]:
    """One batch's pages: fetched (and archived), or read from WARC files."""
    started = time.perf_counter()
    if warc is not None:
        pages = await asyncio.to_thread(_read_archived, batch, warc)
    else:
        pages = await fetch_pages(ctx.fetcher, quote(batch), ctx.file_sources)
        if ctx.archive is not None:
            pages = await asyncio.to_thread(_archive_pages, ctx.archive, pages)
    return pages, RunCounts(pages_fetched=sum(p.response is not None for p in pages), fetch_s=_since(started))


async def _extract_batch(ctx: RunContext, pages: list[PageFetch], counts: RunCounts,
                         stories: StoryParams) -> _Extraction:
    """One batch's articles, extracted in the worker processes (or on the
    Dask cluster); the workers' CPU seconds are its extract_s."""
    crash_point("extracting")
    if ctx.settings.pipeline.task_runner == "dask":
        future = extract_on_cluster.submit(JobBatch([_job(p) for p in pages]), ctx.run_id, ctx.now(), stories)
        extracted, cpu_s = await asyncio.to_thread(future.result)
    else:
        extracted, cpu_s = await extract_pages(ctx.pool, quote(pages), ctx.run_id, ctx.now(), stories)
    return pages, extracted, counts + RunCounts(extract_s=cpu_s)


async def run_pages(ctx: RunContext, jobs: Sequence[Job], warc: WarcInput | None = None) -> int:
    """Fetch, extract and load the pages in batches, three stages overlapping:
    while batch N is extracted in the worker processes, batches N+1 and N+2
    are fetched and batch N-1 is loaded. A fetched batch is ready when the
    pool is done with the last, so the workers never wait on a fetch or a
    load. At most five batches are in memory, whatever the number of pages.
    With `warc`, the pages are read from WARC files instead of fetched.
    Each batch's counts go to the run's tally as the batch is loaded.

    Past `ctx.deadline` ([pipeline] max_run_s) no new batch is started; the
    batches under way finish, and the entries of the others stay in the
    outbox (retries in page_attempts) for the next run. Returns how many
    pages were left so."""
    pipeline = ctx.settings.pipeline
    batches = list(_chunks(jobs, pipeline.batch_size))
    if not batches:
        return 0
    policy, stories = ctx.settings.retry.policy(), ctx.settings.stories.params()
    if pipeline.task_runner == "local":
        ctx.pool.start()  # workers boot while the first batch is fetched
    done = 0

    async def load(extraction: _Extraction) -> None:
        nonlocal done
        pages, extracted, counts = extraction
        # Prefect unwraps quote() arguments; its typing of a task call does not say so.
        loaded = await load_pages(quote(ctx.writer), quote(pages), quote(extracted),  # type: ignore[call-overload]
                                  ctx.run_id, ctx.now(), policy, stories)
        ctx.tally.add(counts + loaded)
        done += len(pages)
        progress.report("pages", done, len(jobs))

    started = min(_FETCH_AHEAD, len(batches))
    fetching = collections.deque(asyncio.ensure_future(_fetch_batch(ctx, b, warc)) for b in batches[:started])
    extracting: asyncio.Future[_Extraction] | None = None
    pending: set[asyncio.Future[Any]] = set(fetching)
    try:
        while fetching:
            pages, counts = await fetching.popleft()
            if started < len(batches) and time.monotonic() < ctx.deadline:
                fetching.append(asyncio.ensure_future(_fetch_batch(ctx, batches[started], warc)))
                pending.add(fetching[-1])
                started += 1
            current = asyncio.ensure_future(_extract_batch(ctx, pages, counts, stories))
            pending.add(current)
            if extracting is not None:
                await load(await extracting)
            extracting = current
        assert extracting is not None  # there was a batch
        await load(await extracting)
    finally:
        for future in pending:
            if not future.done():
                future.cancel()
    left = [job for batch in batches[started:] for job in batch]
    if left:
        ctx.tally.add(RunCounts(entries_pending=sum(len(group) for group, retry in left if retry is None),
                                deferred_pages=len(left)))
        ctx.logger.warning("max_run_s reached: %d pages left for the next run (their entries stay queued)", len(left))
    return len(left)
