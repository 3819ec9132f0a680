"""The `ingest` Prefect flow: feeds → pages → articles → DuckDB.

Batches go to tasks wrapped in `quote`, so that Prefect does not walk every
page body looking for futures (that walk cost ~2 s per 600 pages). The flow
is async (a sync flow waits ~1 s on exit for its heartbeat) and works
in batches: one task per stage per batch of pages, never one per article,
because a Prefect task costs about as much as an extraction. The warehouse is
opened only for short units of work, so readers can get in between.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from flows import progress, search_index
from flows.archive import WarcArchive, iter_responses, read_at
from flows.extraction import (
    Extracted,
    ExtractJob,
    ExtractorPool,
    JobBatch,
    default_workers,
    extract_many,
)
from flows.fetch import Fetcher, Response
from flows.locks import ingest_lock
from flows.settings import FeedSettings, Settings, default_db_path, load_settings
from flows.stories import cluster_backlog, cluster_new
from transforms.dedupe import plan_entries, resolve_duplicates, sighting
from transforms.errors import ExtractError, FetchError, NewsdeskError, ParseError
from transforms.feeds import parse_feed
from transforms.fingerprints import DedupeParams
from transforms.normalize import canonical_url
from transforms.records import Article, Failure, FeedEntry, PageAttempt, ParsedFeed
from transforms.reports import run_report
from transforms.retries import RetryPolicy, next_feed_attempt, next_page_attempt
from warehouse import load, queries
from warehouse.connection import Writer, connect

_FEED_ACCEPT = "application/rss+xml,application/atom+xml,application/rdf+xml,application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.5"


@dataclass
class RunSummary:
    run_id: str
    db: str
    feeds_total: int = 0
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    entries_seen: int = 0
    entries_known: int = 0
    articles_new: int = 0
    articles_from_feed: int = 0
    duplicates: int = 0
    entries_failed: int = 0
    failures: int = 0
    pages_fetched: int = 0
    feeds_skipped: int = 0
    entries_pending: int = 0
    retries: int = 0
    retries_loaded: int = 0
    near_duplicates: int = 0  # of articles_new, joined an existing story
    # Seconds spent per stage; fetching overlaps extraction, so they add up to more than the wall time.
    fetch_s: float = 0.0
    parse_s: float = 0.0
    extract_s: float = 0.0
    dedupe_s: float = 0.0
    load_s: float = 0.0
    failure_reasons: dict[str, int] = field(default_factory=dict)

    def add_failures(self, failures: Sequence[Failure]) -> None:
        self.failures += len(failures)
        for f in failures:
            self.failure_reasons[f.reason] = self.failure_reasons.get(f.reason, 0) + 1


@dataclass(frozen=True, slots=True)
class FeedFetch:
    feed: FeedSettings
    response: Response | None
    error: FetchError | None
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class PageFetch:
    entries: tuple[FeedEntry, ...]  # the entries that share this page's link
    response: Response | None
    error: NewsdeskError | None
    retry: PageAttempt | None = None  # set when this is a retry from page_attempts
    archived: tuple[str, int] | None = None  # (WARC file, offset) of the response


def _now() -> datetime:
    return datetime.now(timezone.utc)


_clock = time.perf_counter


def _since(started: float) -> float:
    return time.perf_counter() - started


def _failure(error: NewsdeskError, *, run_id: str, source: str | None, at: datetime, outcome: str) -> Failure:
    return Failure(run_id=run_id, stage=error.stage, url=error.url, source=source, reason=error.reason,
                   error=error.message, at=at, transient=error.transient, outcome=outcome)


# -- tasks -------------------------------------------------------------------


@task(cache_policy=NO_CACHE)
async def fetch_feeds(fetcher: Fetcher, feeds: Sequence[FeedSettings], validators: dict[str, tuple]) -> list[FeedFetch]:
    """Fetch every feed concurrently, with conditional GET."""

    async def one(feed: FeedSettings) -> FeedFetch:
        etag, last_modified = validators.get(feed.name, (None, None))
        try:
            resp = await fetcher.get(feed.url, etag=etag, last_modified=last_modified, allow_file=True, accept=_FEED_ACCEPT)
            return FeedFetch(feed, resp, None, _now())
        except FetchError as exc:
            return FeedFetch(feed, None, exc, _now())

    return list(await asyncio.gather(*(one(f) for f in feeds)))


def _parse_all(fetched: Sequence[FeedFetch]) -> list[ParsedFeed | NewsdeskError | None]:
    out: list[ParsedFeed | NewsdeskError | None] = []
    for item in fetched:
        if item.response is None or item.response.not_modified:
            out.append(None)
            continue
        try:
            out.append(parse_feed(
                item.response.body, source=item.feed.name, url=item.response.final_url,
                headers=item.response.headers, language=item.feed.language,
            ))
        except NewsdeskError as exc:
            out.append(exc)
    return out


@task(cache_policy=NO_CACHE)
async def parse_feeds(fetched: Sequence[FeedFetch]) -> list[ParsedFeed | NewsdeskError | None]:
    """feedparser is CPU-bound (~100 ms per 200 items): keep it off the event loop."""
    return await asyncio.to_thread(_parse_all, fetched)


@task(cache_policy=NO_CACHE)
async def fetch_pages(fetcher: Fetcher, jobs: Sequence[tuple[tuple[FeedEntry, ...], PageAttempt | None]],
                      file_sources: frozenset[str]) -> list[PageFetch]:
    """Fetch the page of each group of entries; different hosts in parallel."""

    async def one(group: tuple[FeedEntry, ...], retry: PageAttempt | None) -> PageFetch:
        entry = group[0]
        try:
            resp = await fetcher.get_page(entry.link, allow_file=entry.source in file_sources)
            return PageFetch(group, resp, None, retry)
        except FetchError as exc:
            return PageFetch(group, None, exc, retry)

    return list(await asyncio.gather(*(one(g, r) for g, r in jobs)))


def _job(page: PageFetch) -> ExtractJob:
    resp = page.response
    return ExtractJob(
        entry=page.entries[0], body=resp.body if resp else None, content_type=resp.content_type if resp else "",
        charset=resp.charset if resp else None, final_url=resp.final_url if resp else None, problem=page.error,
    )


@task(cache_policy=NO_CACHE)
async def extract_pages(pool: ExtractorPool, pages: Sequence[PageFetch], run_id: str, now: datetime,
                        dedupe: DedupeParams) -> tuple[list[Extracted], float]:
    """HTML → fingerprinted articles, in the worker processes, so that
    fetching and loading go on meanwhile. Also returns the workers' CPU seconds."""
    return await pool.extract([_job(p) for p in pages], run_id, now, dedupe)


@task(cache_policy=NO_CACHE)
def extract_on_cluster(batch: JobBatch, run_id: str, now: datetime,
                       dedupe: DedupeParams) -> tuple[list[Extracted], float]:
    """The same extraction, as a task the flow's task runner places (a Dask
    worker with `task_runner = "dask"`); the page bytes travel with it."""
    return extract_many(batch.jobs, run_id, now, dedupe)


@task(cache_policy=NO_CACHE)
async def load_pages(db: Writer, pages: Sequence[PageFetch], extracted: Sequence[Extracted], run_id: str, now: datetime,
                     policy: RetryPolicy, dedupe: DedupeParams) -> dict:
    """DuckDB work in a thread: the event loop keeps fetching the next batch."""
    return await asyncio.to_thread(_load_pages, db, pages, extracted, run_id, now, policy, dedupe)


def _load_pages(db: Writer, pages: Sequence[PageFetch], extracted: Sequence[Extracted], run_id: str, now: datetime,
                policy: RetryPolicy, dedupe: DedupeParams) -> dict:
    """Resolve exact duplicates against the warehouse, cluster the new
    articles into stories, and load one batch: new articles, sightings,
    failures, pending retries and upgrades."""
    built: list[tuple[tuple[FeedEntry, ...], Article]] = []
    failures: list[Failure] = []
    upgrades: list[Article] = []
    settled: list[tuple[str, str]] = []
    open_attempts: list[tuple[PageFetch, Article | None, NewsdeskError]] = []
    counts = {"entries_failed": 0, "entries_pending": 0, "retries": 0, "retries_loaded": 0}
    from_retry: set[str] = set()  # retried entries' articles: counted as retries, not as new entries
    for page, (article, problem) in zip(pages, extracted):
        entry = page.entries[0]
        if article is not None and article.body_source == "page" and page.archived:
            article = replace(article, warc_file=page.archived[0], warc_offset=page.archived[1])
        fell_back = article is not None and article.body_source == "feed"
        reason = problem.reason if problem else (article.body_note if fell_back else None)
        if page.retry is not None:
            counts["retries"] += 1
        if reason is None:  # the page body made it
            if page.retry is not None:
                counts["retries_loaded"] += 1
                settled.extend((e.source, e.canonical_link) for e in page.entries)
                if page.retry.article_id:
                    upgrades.append(replace(article, article_id=page.retry.article_id))
                    continue
                from_retry.add(article.article_id)
            built.append((page.entries, article))
            continue
        # A page whose text was not used (bot wall, paywall ...) is an extract-stage problem.
        problem = problem or ExtractError(entry.link, reason, f"page text not used: {reason}")
        failures.append(_failure(problem, run_id=run_id, source=entry.source, at=now,
                                 outcome="feed_fallback" if article is not None else "not_loaded"))
        if page.retry is None and article is not None:
            built.append((page.entries, article))
        open_attempts.append((page, article, problem))

    started = _clock()
    with db.session() as con:
        known = queries.select_known_articles(con, [a.url for _, a in built], [a.content_hash for _, a in built])
        resolved = resolve_duplicates(built, known, run_id=run_id, now=now)
        articles, near_duplicates = cluster_new(con, resolved.articles, dedupe)
        article_of = {(s.source, s.canonical_link): s.article_id for s in resolved.sightings}
        attempts: list[PageAttempt] = []
        for page, article, problem in open_attempts:
            if page.retry is not None:
                tries = page.retry.attempts + 1
                status, next_at = next_page_attempt(problem.transient, tries, now, policy)
                attempts.append(replace(page.retry, status=status, attempts=tries, last_reason=problem.reason,
                                        last_error=problem.message, last_attempt_at=now, next_attempt_at=next_at))
                continue
            if article is not None and not problem.transient:
                continue  # loaded from the feed for good: nothing left to try
            status, next_at = next_page_attempt(problem.transient, 1, now, policy)
            if article is None:
                counts["entries_pending" if status == "pending" else "entries_failed"] += len(page.entries)
            for e in page.entries:
                attempts.append(PageAttempt(
                    entry=e, article_id=article_of.get((e.source, e.canonical_link)), status=status, attempts=1,
                    last_reason=problem.reason, last_error=problem.message, first_failed_at=now, last_attempt_at=now,
                    next_attempt_at=next_at,
                ))
        loading = _clock()
        dedupe_s = loading - started
        load.load_batch(con, articles=articles, sightings=resolved.sightings, failures=failures,
                        attempts=attempts, upgrades=upgrades, settled=settled)
    return {
        **counts,
        "articles_new": sum(a.article_id not in from_retry for a in resolved.articles),
        "articles_from_feed": sum(a.body_source == "feed" for a in resolved.articles),
        "duplicates": resolved.duplicates,
        "near_duplicates": near_duplicates,
        "dedupe_s": dedupe_s,
        "load_s": _since(loading),
        "failures": failures,
    }


# -- the flow ----------------------------------------------------------------


_FETCH_AHEAD = 2  # batches fetched ahead of extraction


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@flow(name="ingest", log_prints=False)
async def ingest(sources: str | None = None, db: str | None = None, feeds: list[str] | None = None,
                 from_warc: list[str] | None = None) -> dict:
    """Fetch the feeds of the sources file (all, or those named or tagged in
    `feeds`), extract the new articles and load them into the DuckDB
    warehouse. Returns the run's counts. With `from_warc`, the pages come
    from those WARC files instead of the feeds.

    Only one ingest writes a warehouse at a time: a second one waits for the
    first (up to [pipeline] lock_wait_s), then gives up with an error."""
    logger = get_run_logger()
    settings: Settings = select_feeds(load_settings(sources), feeds)
    db_path = default_db_path(db)
    lock = ingest_lock(db_path, settings.pipeline.lock_wait_s)
    waited = await asyncio.to_thread(lock.__enter__)
    if waited > 1:
        logger.info("waited %.0f s for another ingest of %s to finish", waited, db_path)
    try:
        return await _ingest(settings, db_path, from_warc, logger)
    finally:
        lock.__exit__(None, None, None)


def select_feeds(settings: Settings, wanted: Sequence[str] | None) -> Settings:
    """Keep the feeds named in `wanted`, or carrying one of its tags."""
    if not wanted:
        return settings
    known = {f.name for f in settings.feeds} | {t for f in settings.feeds for t in f.tags}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise ValueError(f"no feed is named or tagged {', '.join(map(repr, unknown))}; "
                         f"feeds: {', '.join(sorted(f.name for f in settings.feeds))}")
    chosen = tuple(f for f in settings.feeds if f.name in wanted or set(f.tags) & set(wanted))
    return settings.model_copy(update={"feeds": chosen})


async def _ingest(settings: Settings, db_path: Path, from_warc: list[str] | None, logger) -> dict:
    run_id = str(flow_run.id or uuid.uuid4())
    started = _now()
    warc = None
    if from_warc:
        settings = settings.model_copy(update={"feeds": ()})
        warc = await asyncio.to_thread(warc_input, from_warc)
    summary = RunSummary(run_id=run_id, db=str(db_path), feeds_total=len(settings.feeds))

    with connect(db_path) as con:
        load.upsert_sources(con, [f.model_dump() for f in settings.feeds] + (warc.sources if warc else []))
        load.start_run(con, run_id, started, flow_run.id)
        feed_state = queries.select_feed_state(con)
    try:
        # Articles loaded before stories existed, or before [dedupe] changed.
        clock = _clock()
        backlog = await asyncio.to_thread(cluster_backlog, db_path, settings.dedupe.params())
        summary.dedupe_s += _since(clock)
        if backlog:
            logger.info("fingerprinted %d stored articles for the current [dedupe] settings", backlog)
        await _run(settings, db_path, run_id, started, summary, feed_state, logger, warc)
    except Exception as exc:
        with connect(db_path) as con:
            load.finish_run(con, run_id, finished_at=_now(), status="failed", counts=asdict(summary), error=repr(exc))
        raise
    with connect(db_path) as con:
        # Search sees this run's articles: the index takes only what the run's loads queued.
        search_index.update(con, db_path)
        load.finish_run(con, run_id, finished_at=_now(), status="completed", counts=asdict(summary))
        per_feed = queries.select_run_feeds(con, run_id)
    if flow_run.id:  # under Prefect: the run's report, in the UI beside the flow run
        await acreate_markdown_artifact(markdown=run_report(asdict(summary), per_feed), key="newsdesk-run",
                                        description=f"newsdesk ingest into {db_path}")
    logger.info(
        "run %s: %d feeds (%d failed, %d backing off), %d entries, %d new articles, %d duplicates, "
        "%d near-duplicates, %d pending, %d failures, %d retries (%d loaded)",
        run_id, summary.feeds_total, summary.feeds_failed, summary.feeds_skipped, summary.entries_seen,
        summary.articles_new, summary.duplicates, summary.near_duplicates, summary.entries_pending, summary.failures,
        summary.retries, summary.retries_loaded,
    )
    return asdict(summary)


def flow_for(settings: Settings):
    """The `ingest` flow with the task runner the settings ask for."""
    if settings.pipeline.task_runner != "dask":
        return ingest
    from prefect_dask import DaskTaskRunner

    if settings.pipeline.dask_address:
        runner = DaskTaskRunner(address=settings.pipeline.dask_address)
    else:
        workers = settings.pipeline.workers or default_workers()
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                                "dashboard_address": None})
    return ingest.with_options(task_runner=runner)


def _policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(**settings.retry.model_dump())


async def _run(settings: Settings, db_path: Path, run_id: str, started: datetime, summary: RunSummary,
               feed_state: dict, logger, warc: WarcInput | None = None) -> None:
    policy = _policy(settings)
    dedupe = settings.dedupe.params()
    file_sources = frozenset(f.name for f in settings.feeds if urlsplit(f.url).scheme == "file")
    # A feed that keeps failing is polled less often (backoff up to 24 h), never dropped.
    due = []
    for feed in settings.feeds:
        state = feed_state.get(feed.name)
        if state and state.next_attempt_at and state.next_attempt_at > started:
            logger.info("feed %s is backing off until %s", feed.name, state.next_attempt_at)
        else:
            due.append(feed)
    summary.feeds_skipped = len(settings.feeds) - len(due)
    async with Fetcher(settings.fetch) as fetcher:
        progress.report("feeds", 0, len(due))
        validators = {name: (state.etag, state.last_modified) for name, state in feed_state.items()}
        clock = _clock()
        archive = _archive_for(settings, db_path)
        fetched = await fetch_feeds(fetcher, due, quote(validators))
        if archive is not None:
            await asyncio.to_thread(lambda: [archive.write(f.response) for f in fetched
                                             if f.response is not None and f.response.status == 200])
        summary.fetch_s += _since(clock)
        clock = _clock()
        parsed = await parse_feeds(quote(fetched))
        summary.parse_s += _since(clock)
        progress.report("feeds", len(due), len(due))

        entries: list[FeedEntry] = []
        ok_polls: list[FeedFetch] = []  # their rows need the plan's new-entry counts
        states: list[load.SourceState] = []
        polls: list[dict] = []
        feed_failures: list[Failure] = []
        for item, result in zip(fetched, parsed):
            error = item.error or (result if isinstance(result, NewsdeskError) else None)
            status = item.response.status if item.response else None
            name = item.feed.name
            if error is not None:
                summary.feeds_failed += 1
                feed_failures.append(_failure(error, run_id=run_id, source=name, at=item.fetched_at, outcome="not_loaded"))
                logger.warning("feed %s failed: %s", name, str(error))
                state = feed_state.get(name)
                failures_so_far = (state.consecutive_failures if state else 0) + 1
                states.append(load.SourceState(name, item.fetched_at, status, ok=False, error=str(error),
                                               next_attempt_at=next_feed_attempt(failures_so_far, item.fetched_at, policy)))
                polls.append(dict(run_id=run_id, source=name, fetched_at=item.fetched_at, status=status, ok=False,
                                  not_modified=False, error=str(error), entries=0, new_entries=0))
                continue
            summary.feeds_ok += 1
            ok_polls.append(item)
            headers = item.response.headers
            if item.response.not_modified:
                summary.feeds_not_modified += 1
            else:
                entries.extend(result.entries)
                if result.warning:
                    logger.info("feed %s is ill-formed but readable: %s", name, result.warning)
                for link, why in result.rejected:
                    feed_failures.append(_failure(ParseError(link, "no_link", why), run_id=run_id, source=name,
                                                  at=item.fetched_at, outcome="not_loaded"))
                    summary.entries_seen += 1
                    summary.entries_failed += 1
            states.append(load.SourceState(
                name, item.fetched_at, status, ok=True, etag=headers.get("etag"),
                last_modified=headers.get("last-modified"), title=result.title if isinstance(result, ParsedFeed) else None,
            ))
        if warc is not None:
            entries.extend(warc.entries)
        summary.entries_seen += len(entries)
        summary.add_failures(feed_failures)

        now = _now()
        dedupe_started = _clock()
        with connect(db_path) as con:
            known = queries.select_known_for_entries(con, entries)
            plan = plan_entries(entries, known)
            in_feed = Counter(e.source for e in entries)
            seen_before = Counter(e.source for e in plan.already_seen)
            for item in ok_polls:
                name = item.feed.name
                polls.append(dict(run_id=run_id, source=name, fetched_at=item.fetched_at,
                                  status=item.response.status, ok=True, not_modified=item.response.not_modified,
                                  error=None, entries=in_feed[name], new_entries=in_feed[name] - seen_before[name]))
            summary.entries_known = len(plan.already_seen)
            # Entries of articles we already hold need no fetch: only a sighting.
            known_sightings = [sighting(e, article_id, run_id=run_id, now=now) for e, article_id in plan.known]
            load.update_source_states(con, states)
            load.insert_feed_polls(con, polls)
            load.load_batch(con, sightings=known_sightings, failures=feed_failures)
            summary.duplicates += len(known_sightings)
            retries = queries.select_due_attempts(con, now)

        jobs = [(group, None) for group in plan.to_fetch] + [((a.entry,), a) for a in retries]
        summary.dedupe_s += _since(dedupe_started)
        progress.report("pages", 0, len(jobs))
        pool = ExtractorPool(settings.pipeline.workers or default_workers())
        writer = Writer(db_path, hold_s=settings.pipeline.hold_db_s)
        try:
            await _pages(jobs, fetcher, pool, settings, writer, run_id, summary, file_sources, policy, dedupe,
                         None if warc else archive, warc)
        finally:
            pool.close()
            writer.close()


@dataclass(frozen=True)
class WarcInput:
    """Pages to ingest from WARC files: one entry per HTML response."""

    entries: list[FeedEntry]
    where: dict[str, tuple[str, int]]  # canonical link -> (file, offset)
    sources: list[dict]  # one pseudo-feed per file, for the sources table


def warc_input(paths: Sequence[str]) -> WarcInput:
    entries, where, sources = [], {}, []
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        name = f"warc.{resolved.stem.split('.')[0]}"
        sources.append({"name": name, "url": resolved.as_uri(), "language": None, "tags": ["warc"]})
        for record in iter_responses(str(resolved)):
            kind = record.headers.get("content-type", "").split(";")[0].strip().lower()
            if record.status != 200 or not record.url or kind not in ("text/html", "application/xhtml+xml", ""):
                continue
            link = canonical_url(record.url)
            if link in where:
                continue
            where[link] = (str(resolved), record.location[1])
            entries.append(FeedEntry(source=name, link=record.url, canonical_link=link, guid=None, title=None,
                                     author=None, published_at=None, feed_text="", language=None))
    return WarcInput(entries, where, sources)


def _read_archived(batch, warc: WarcInput) -> list[PageFetch]:
    pages = []
    for group, retry in batch:
        path, offset = warc.where[group[0].canonical_link]
        record = read_at(path, offset)
        response = Response(url=record.url, final_url=record.url, status=record.status, headers=record.headers,
                            body=record.body)
        pages.append(PageFetch(group, response, None, retry, archived=(path, offset)))
    return pages


def _archive_pages(archive: WarcArchive, pages: Sequence[PageFetch]) -> list[PageFetch]:
    return [replace(p, archived=archive.write(p.response)) if p.response is not None and p.response.status == 200
            else p for p in pages]


def _archive_for(settings: Settings, db_path: Path) -> WarcArchive | None:
    if not settings.archive.enabled:
        return None
    root = db_path.resolve().parent
    directory = Path(settings.archive.dir).expanduser() if settings.archive.dir else root / "warc"
    return WarcArchive(directory if directory.is_absolute() else root / directory, root,
                       settings.archive.max_file_mb * 1_000_000)


async def _pages(jobs, fetcher: Fetcher, pool: ExtractorPool, settings: Settings, writer: Writer, run_id: str,
                 summary: RunSummary, file_sources: frozenset[str], policy: RetryPolicy, dedupe: DedupeParams,
                 archive: WarcArchive | None, warc: WarcInput | None = None) -> None:
    """Fetch, extract and load the pages in batches, three stages overlapping:
    while batch N is extracted in the worker processes, batches N+1 and N+2
    are fetched and batch N-1 is loaded. A fetched batch is ready when the
    pool is done with the last, so the workers never wait on a fetch or a
    load. At most five batches are in memory, whatever the number of pages."""
    batches = list(_chunks(jobs, settings.pipeline.batch_size))
    if not batches:
        return
    if settings.pipeline.task_runner == "local":
        pool.start()  # workers boot while the first batch is fetched
    done = 0

    async def fetch(batch):
        started = _clock()
        if warc is not None:  # the pages are in the WARC files already
            pages = await asyncio.to_thread(_read_archived, batch, warc)
            summary.fetch_s += _since(started)
            return pages
        pages = await fetch_pages(fetcher, quote(batch), file_sources)
        if archive is not None:
            pages = await asyncio.to_thread(_archive_pages, archive, pages)
        summary.fetch_s += _since(started)
        return pages

    async def extract(pages):
        if settings.pipeline.task_runner == "dask":
            future = extract_on_cluster.submit(JobBatch([_job(p) for p in pages]), run_id, _now(), dedupe)
            extracted, cpu_s = await asyncio.to_thread(future.result)
        else:
            extracted, cpu_s = await extract_pages(pool, quote(pages), run_id, _now(), dedupe)
        summary.extract_s += cpu_s
        return pages, extracted

    async def load_batch(pages, extracted):
        nonlocal done
        counts = await load_pages(quote(writer), quote(pages), quote(extracted), run_id, _now(), policy, dedupe)
        summary.add_failures(counts.pop("failures"))
        for key, value in counts.items():
            setattr(summary, key, getattr(summary, key) + value)
        done += len(pages)
        progress.report("pages", done, len(jobs))

    fetching = collections.deque(asyncio.ensure_future(fetch(b)) for b in batches[:_FETCH_AHEAD])
    extracting: asyncio.Future | None = None
    pending = set(fetching)
    try:
        for n in range(len(batches)):
            pages = await fetching.popleft()
            summary.pages_fetched += sum(p.response is not None for p in pages)
            if n + _FETCH_AHEAD < len(batches):
                fetching.append(asyncio.ensure_future(fetch(batches[n + _FETCH_AHEAD])))
                pending.add(fetching[-1])
            current = asyncio.ensure_future(extract(pages))
            pending.add(current)
            if extracting is not None:
                await load_batch(*await extracting)
            extracting = current
        await load_batch(*await extracting)
    finally:
        for future in pending:
            if not future.done():
                future.cancel()
