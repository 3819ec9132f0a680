"""Pages → fingerprinted articles, across worker processes.

Extraction (trafilatura with metadata, ~30 ms a page) is the one stage that
needs CPU, so it runs in a pool of `workers` processes; everything else stays
in the flow's process. A worker gets plain records (`ExtractJob`: the entry
and the response bytes) and returns records, so nothing but picklable data
crosses the process boundary. This module imports neither Prefect nor DuckDB:
the workers start from a forkserver that preloads only it and `transforms`.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Sequence

from transforms.articles import (
    build_article,
    decode_html,
    extract_page,
    looks_like_html,
)
from transforms.errors import ExtractError, FetchError, StageError
from transforms.fingerprints import StoryParams, fingerprint
from transforms.records import Article, FeedEntry

_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_SNIFF_TYPES = {"", "application/octet-stream", "text/plain"}

Extracted = tuple[Article | None, StageError | None]


@dataclass(frozen=True, slots=True)
class ExtractJob:
    entry: FeedEntry  # the first of the entries that share the page
    body: bytes | None  # None when the fetch failed
    content_type: str
    charset: str | None
    final_url: str | None
    problem: StageError | None  # why the fetch failed, if it did


class JobBatch:
    """Jobs in a plain container: Prefect does not walk into it looking for
    futures, and unlike `quote` it survives Dask's serialization."""

    __slots__ = ("jobs",)

    def __init__(self, jobs: Sequence[ExtractJob]):
        self.jobs = list(jobs)


def _crash(job: ExtractJob, exc: Exception) -> ExtractError:
    return ExtractError(job.entry.link, "extractor_crash", f"{type(exc).__name__}: {exc}")


def extract_one(job: ExtractJob, run_id: str, now: datetime, stories: StoryParams) -> Extracted:
    """Article for one page; falls back to the feed text when the page fails.
    Returns the article and the problem met on the way (either may be None).
    Never raises: whatever goes wrong with one page is that page's problem."""
    problem = job.problem
    extracted = None
    if job.body is not None:
        if job.content_type in _HTML_TYPES or (job.content_type in _SNIFF_TYPES and looks_like_html(job.body)):
            try:
                assert job.final_url is not None  # a body comes with the URL it was read from
                extracted = extract_page(decode_html(job.body, job.charset), job.final_url)
            except StageError as exc:
                problem = exc
            except Exception as exc:  # a bug or a corner of a library: this page's failure only
                problem = _crash(job, exc)
        else:
            problem = FetchError(job.entry.link, "not_html", f"Content-Type {job.content_type or 'missing'}")
    try:
        article = build_article(job.entry, extracted, page_problem=problem.reason if problem else None,
                                run_id=run_id, now=now)
        return replace(article, fingerprint=fingerprint(article.body, stories)), problem
    except StageError as exc:
        return None, problem or exc
    except Exception as exc:
        return None, problem or _crash(job, exc)


def extract_many(jobs: Sequence[ExtractJob], run_id: str, now: datetime,
                 stories: StoryParams) -> tuple[list[Extracted], float]:
    """The results, and the CPU seconds they took (for the run's stage timings)."""
    started = time.process_time()
    results = [extract_one(job, run_id, now, stories) for job in jobs]
    return results, time.process_time() - started


def _ready() -> None:
    """A no-op that makes the pool start its workers."""


_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> None:
    """Worker initializer: end this worker when the run's process ends, even
    by SIGKILL. A worker's parent is the forkserver, not the run, so the
    kernel's parent-death signal (set too) covers only the forkserver dying;
    a thread watches the run's own process. Once the workers are gone, the
    forkserver and the resource tracker see their pipes close and exit."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)  # readable once the process has ended (Linux >= 5.3)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    else:
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
    os._exit(70)  # no cleanup: nothing of a dead run is worth finishing


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class ExtractorPool:
    """A process pool for one run, started on first use (an empty run never
    pays for it). With one worker, extraction runs in a thread instead."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _submit(self, fn, *args):
        # Workers are started inside submit(). multiprocessing would have each
        # of them re-import the __main__ module first: for the CLI that is
        # Prefect (~3 s and ~150 MB a worker), and for a user's script without
        # an `if __name__ == "__main__"` guard, a second run of the script.
        # The workers need nothing from __main__, so they are shown an empty one.
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            return self._executor().submit(fn, *args)
        finally:
            sys.modules["__main__"] = main

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver, not fork: the flow's process has threads (Prefect,
            # the HTTP client) whose locks a forked child could inherit held.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["flows.extraction"])
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                             initializer=_die_with, initargs=(os.getpid(),))
        return self._pool

    def _replace(self) -> None:
        """Drop a broken pool (a worker died): the next submit starts a new one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def start(self) -> None:
        """Boot the workers now, without waiting for them."""
        if self.workers > 1:
            for _ in range(self.workers):
                self._submit(_ready)

    async def extract(self, jobs: Sequence[ExtractJob], run_id: str, now: datetime,
                      stories: StoryParams) -> tuple[list[Extracted], float]:
        if not jobs:
            return [], 0.0
        if self.workers <= 1:
            return await asyncio.to_thread(extract_many, jobs, run_id, now, stories)
        # A few contiguous slices per worker: few round trips, order kept, and
        # a slice of heavy pages does not leave the other workers idle.
        size = max(1, -(-len(jobs) // (self.workers * 4)))
        slices = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        parts = await asyncio.gather(*(
            asyncio.wrap_future(self._submit(extract_many, part, run_id, now, stories)) for part in slices
        ), return_exceptions=True)
        if any(isinstance(p, BrokenProcessPool) for p in parts):
            # A worker died (killed, out of memory, a crash in C code): every
            # slice still in that pool failed with it. Those slices run again,
            # one page at a time in a fresh pool, so that only the page that
            # kills a worker is marked, and the run goes on.
            self._replace()
            for n, (part, result) in enumerate(zip(slices, parts)):
                if isinstance(result, BrokenProcessPool):
                    parts[n] = await self._one_by_one(part, run_id, now, stories)
        done: list[tuple[list[Extracted], float]] = []
        for result in parts:
            if isinstance(result, BaseException):
                raise result
            done.append(result)
        return [item for part, _ in done for item in part], sum(cpu for _, cpu in done)

    async def _one_by_one(self, jobs: Sequence[ExtractJob], run_id: str, now: datetime,
                          stories: StoryParams) -> tuple[list[Extracted], float]:
        out: list[Extracted] = []
        cpu_s = 0.0
        for job in jobs:
            try:
                (result,), cpu = await asyncio.wrap_future(self._submit(extract_many, [job], run_id, now, stories))
                cpu_s += cpu
            except BrokenProcessPool:
                self._replace()
                # The page killed its worker twice: it is not extracted; the
                # entry still gets its feed text, built here (no page to parse).
                died = ExtractError(job.entry.link, "worker_died", "the extraction worker process died on this page")
                result = extract_one(replace(job, body=None, problem=died), run_id, now, stories)
            out.append(result)
        return out, cpu_s

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
