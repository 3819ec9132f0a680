"""The extraction pool: same records as in-process, errors survive the trip,
and workers never run the caller's __main__ again."""

import asyncio
import gzip
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from flows.extraction import ExtractJob, ExtractorPool, extract_many
from flows.settings import StorySettings
from tests.conftest import EXTRACTION, REPO
from tests.transforms.test_articles import entry
from transforms.errors import FetchError

NOW = datetime(2026, 1, 2, tzinfo=timezone.utc)

DEFAULT_PARAMS = StorySettings().params()


def jobs() -> list[ExtractJob]:
    pages = sorted((EXTRACTION / "html").glob("*.html.gz"))[:12]
    out = [ExtractJob(entry(link=f"https://x.example/{i}", canonical_link=f"https://x.example/{i}", guid=str(i)),
                      gzip.decompress(p.read_bytes()), "text/html", None, f"https://x.example/{i}", None)
           for i, p in enumerate(pages)]
    failed = FetchError("https://x.example/gone", "http_503", "Service Unavailable", transient=True, retry_after=7.0)
    out.append(ExtractJob(entry(link="https://x.example/gone", canonical_link="https://x.example/gone"), None, "",
                          None, None, failed))
    out.append(ExtractJob(entry(link="https://x.example/pdf", canonical_link="https://x.example/pdf"), b"%PDF-1.7",
                          "application/pdf", None, "https://x.example/pdf", None))
    return out


@pytest.mark.slow
def test_pool_gives_the_same_records_as_in_process():
    work = jobs()
    local, _ = extract_many(work, "run", NOW, DEFAULT_PARAMS)
    pool = ExtractorPool(2)
    try:
        pooled, cpu_s = asyncio.run(pool.extract(work, "run", NOW, DEFAULT_PARAMS))
    finally:
        pool.close()
    assert cpu_s > 0
    assert [a for a, _ in pooled] == [a for a, _ in local]  # articles, fingerprints included, in order
    problems = [p for _, p in pooled]
    assert problems[-2].reason == "http_503" and problems[-2].transient and problems[-2].retry_after == 7.0
    assert type(problems[-2]) is FetchError and problems[-2].url == "https://x.example/gone"
    assert problems[-1].reason == "not_html"
    assert sum(a is not None and a.body_source == "page" for a, _ in pooled) >= 10


@pytest.mark.slow
def test_workers_do_not_rerun_an_unguarded_script(tmp_path):
    script = tmp_path / "no_main_guard.py"
    script.write_text(
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "print('script body ran', flush=True)\n"
        "from flows.extraction import ExtractorPool\n"
        "from tests.flows.test_extraction_pool import jobs, NOW\n"
        "from flows.settings import StorySettings\n"
        "pool = ExtractorPool(2)\n"
        "out, _ = asyncio.run(pool.extract(jobs()[:4], 'r', NOW, StorySettings().params()))\n"
        "pool.close()\n"
        "print('extracted', sum(a is not None for a, _ in out), flush=True)\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("script body ran") == 1
    assert "extracted 4" in result.stdout


class _KillsItsWorker:
    """Unpickled in a worker, ends that process at once (as a segfault or
    the OOM killer would): a real death, seen by the pool as BrokenProcessPool."""

    def __reduce__(self):
        import os

        return (os._exit, (9,))


def test_a_dead_worker_fails_only_its_page_and_the_pool_is_replaced():
    work = jobs()[:6]
    poison = ExtractJob(entry(link="https://x.example/poison", canonical_link="https://x.example/poison",
                              feed_text="The feed's own words about the poison page."),
                        b"<html><body><p>never read</p></body></html>", "text/html", _KillsItsWorker(),
                        "https://x.example/poison", None)
    local, _ = extract_many(work, "run", NOW, DEFAULT_PARAMS)
    pool = ExtractorPool(2)
    try:
        pooled, _ = asyncio.run(pool.extract(work[:3] + [poison] + work[3:], "run", NOW, DEFAULT_PARAMS))
        # Every other page is extracted as if nothing happened, in order.
        assert [a for a, _ in pooled[:3] + pooled[4:]] == [a for a, _ in local]
        article, problem = pooled[3]
        assert problem.reason == "worker_died" and problem.url == "https://x.example/poison"
        assert article.body_source == "feed" and article.body == "The feed's own words about the poison page."
        # The pool works on afterwards (a new one was started).
        again, _ = asyncio.run(pool.extract(work[:2], "run", NOW, DEFAULT_PARAMS))
        assert [a for a, _ in again] == [a for a, _ in local[:2]]
    finally:
        pool.close()
