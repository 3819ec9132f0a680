"""Helpers for flow tests: sources files pointing at the local test server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import SEEDS
from tests.httpserver import LocalServer

CONTENT_TYPES = {".rss": "application/rss+xml", ".atom": "application/atom+xml", ".rdf": "application/rdf+xml"}


def write_sources(path: Path, feeds: list[tuple[str, str]], *, every_run: bool = True, **fetch) -> Path:
    """A sources file for the test server: loopback allowed, no politeness
    delay; each feed polled every run (`interval_min = 0`), as tests that run
    twice expect, unless `every_run` is False (the tests of the schedule)."""
    settings = {"allow_private_networks": ["127.0.0.0/8"], "per_host_delay_s": 0, "retry_backoff_s": 0.01,
                "timeout_s": 5, "user_agent": "newsdesk-tests/1.0 (+https://example.invalid/newsdesk)"}
    settings.update(fetch)
    lines = ["[fetch]"]
    for key, value in settings.items():
        lines.append(f"{key} = {_toml(value)}")
    for name, url in feeds:
        lines += ["", "[[feeds]]", f'name = "{name}"', f'url = "{url}"'] + (["interval_min = 0"] if every_run else [])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def serve_seeds(server: LocalServer) -> list[tuple[str, str]]:
    """The seed feeds and pages over HTTP; the feeds' relative links then
    resolve to pages on the same server."""
    for page in (SEEDS / "pages").glob("*.html"):
        server.route(f"/pages/{page.name}", page.read_bytes())
    feeds = []
    for feed in sorted((SEEDS / "feeds").iterdir()):
        url = server.route(f"/feeds/{feed.name}", feed.read_bytes(), content_type=CONTENT_TYPES[feed.suffix])
        feeds.append((feed.stem, url))
    return feeds


def run_ingest(sources: Path, db: Path, *, all_feeds: bool = False) -> dict:
    from flows.ingest import ingest

    return asyncio.run(ingest(sources=str(sources), db=str(db), all_feeds=all_feeds))


def query(db: Path, sql: str, params=None) -> list[tuple]:
    from warehouse.connection import connect

    with connect(db, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def assert_accounting(summary: dict) -> None:
    """Every entry seen ends as exactly one thing."""
    assert summary["entries_seen"] == (
        summary["entries_known"] + summary["articles_new"] + summary["duplicates"]
        + summary["entries_pending"] + summary["entries_failed"]
    ), summary


_WORDS = ("harbour council budget river bridge school market railway festival museum hospital library "
          "election weather orchestra stadium airport factory garden theatre").split()


def story_page(story: str) -> bytes:
    """An article page of 160 words, different for every `story` name and
    the same every time: enough text for the extractor, and a body of its own."""
    n = sum(map(ord, story))
    words = [_WORDS[(n * 7 + i * 3 + i * i) % len(_WORDS)] for i in range(160)]
    paragraphs = " ".join(f"<p>Report {story}: {' '.join(words[j:j + 40])}.</p>" for j in range(0, 160, 40))
    return (f"<html><head><title>Story {story}</title></head><body><article><h1>Story {story}</h1>"
            f"{paragraphs}</article></body></html>").encode()
