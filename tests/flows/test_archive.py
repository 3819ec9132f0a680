"""The raw WARC archive: ingest over HTTP, then re-extract with the server
gone; ingest from a WARC file; revisions of replaced bodies."""

import asyncio
import gzip
from pathlib import Path

import pytest

import transforms.articles as articles_module
from flows.archive import iter_responses, read_at, resolve
from flows.ingest import ingest
from flows.reextract import reextract
from flows.settings import StorySettings, load_settings
from tests.conftest import EXTRACTION
from tests.flows.helpers import query, run_ingest, serve_seeds, write_sources
from tests.httpserver import LocalServer
from transforms.fingerprints import fingerprint

ROWS = "SELECT * EXCLUDE (run_id) FROM articles ORDER BY article_id"

DEFAULT_PARAMS = StorySettings().params()


@pytest.fixture
def archived(tmp_path, prefect_harness, make_db, monkeypatch):
    """The seeds plus 12 real corpus pages, ingested over HTTP; the server is
    gone afterwards. Returns the sources file, the warehouse and the folder
    the archive's paths are relative to (the file's folder; for a lake, the
    working directory)."""
    with LocalServer() as server:
        feeds = serve_seeds(server)
        items = []
        for i, page in enumerate(sorted((EXTRACTION / "html").glob("*.html.gz"))[:12]):
            url = server.route(f"/real/{i}.html", gzip.decompress(page.read_bytes()), content_type="text/html")
            # The first item's date cannot be read: the row keeps it (published_raw).
            date = "<pubDate>yesterday</pubDate>" if i == 0 else ""
            items.append(f"<item><title>Real page {i}</title><link>{url}</link>{date}</item>")
        feeds.append(("real", server.route("/real.xml", f'<rss version="2.0"><channel><title>r</title>{"".join(items)}'
                                           "</channel></rss>", content_type="application/rss+xml")))
        sources = write_sources(tmp_path / "s.toml", feeds)
        root = tmp_path / "data"
        root.mkdir()
        db = make_db()
        if isinstance(db, Path):
            db = root / "wh.duckdb"
        else:
            monkeypatch.chdir(root)
        summary = run_ingest(sources, db)
    assert summary["articles_new"] == 27
    return sources, db, root


@pytest.mark.slow
def test_every_page_and_feed_is_in_the_archive_and_rows_point_at_their_page(archived):
    sources, db, root = archived
    files = list((root / "warc").glob("*.warc.gz"))
    assert files
    records = [r for f in files for r in iter_responses(str(f))]
    assert sum(r.url.endswith((".rss", ".atom", ".rdf", ".xml")) for r in records) == 4  # the feeds
    rows = query(db, "SELECT url, warc_file, warc_offset, body_source FROM articles")
    for url, warc_file, offset, body_source in rows:
        if body_source == "feed":
            assert warc_file is None
            continue
        assert not warc_file.startswith("/")  # relative to the warehouse's folder
        record = read_at(str(resolve(warc_file, root)), offset)
        assert record.status == 200 and b"<" in record.body


@pytest.mark.slow
def test_reextract_offline_gives_identical_rows_then_applies_a_changed_extractor(archived, monkeypatch):
    sources, db, _ = archived
    before = query(db, ROWS)
    report = reextract(db, load_settings(sources))  # the server is down: nothing may touch the network
    assert report.articles == 26 and report.changed == [] and report.missing == []
    assert query(db, ROWS) == before
    # The feed date that could not be read survives re-extraction, note and all.
    [(raw, note)] = query(db, "SELECT published_raw, date_note FROM articles WHERE published_raw IS NOT NULL")
    assert raw == "yesterday" and "feed date 'yesterday' could not be read" in note

    # A "new extractor": trafilatura with comments and recall-favouring settings.
    monkeypatch.setitem(articles_module.EXTRACT_OPTIONS, "include_comments", True)
    monkeypatch.setitem(articles_module.EXTRACT_OPTIONS, "favor_recall", True)
    bodies = dict(query(db, "SELECT article_id, body FROM articles"))
    report = reextract(db, load_settings(sources))
    assert report.changed, "a different extraction changes some bodies"
    body_changed = {article_id for article_id, _, fields in report.changed if "body" in fields}
    assert body_changed
    revisions = query(db, "SELECT article_id, reason, body FROM article_revisions")
    # Each replaced body is kept, once, as it was; the row holds the new one.
    assert sorted(r[0] for r in revisions) == sorted(body_changed)
    assert all(reason == "reextract" and bodies[a] == old for a, reason, old in revisions)
    now = dict(query(db, "SELECT article_id, body FROM articles"))
    assert all(now[a] != bodies[a] for a in body_changed)
    assert len(now) == len(before)  # updated in place, nothing added
    # The fingerprints follow the new bodies, so stories are matched on what is stored.
    for article_id in body_changed:
        [(signature,)] = query(db, "SELECT signature FROM article_fingerprints WHERE article_id = ?", [article_id])
        assert bytes(signature) == fingerprint(now[article_id], DEFAULT_PARAMS).signature
    # Run again with the same extractor: nothing more changes.
    assert reextract(db, load_settings(sources)).changed == []


@pytest.mark.slow
def test_ingest_from_warc_gives_the_same_articles(archived, tmp_path, make_db):
    sources, db, root = archived
    warc_files = [str(f) for f in (root / "warc").glob("*.warc.gz")]
    fresh = make_db("fresh")
    if isinstance(fresh, Path):
        fresh = tmp_path / "fresh.duckdb"
    summary = asyncio.run(ingest(sources=str(sources), db=str(fresh), from_warc=warc_files))
    assert summary["feeds_total"] == 0 and summary["failures"] == 0
    original = query(db, "SELECT article_id, body FROM articles WHERE body_source = 'page' ORDER BY 1")
    again = query(fresh, "SELECT article_id, body FROM articles ORDER BY 1")
    assert again == original
    # And a second time: nothing new.
    assert asyncio.run(ingest(sources=str(sources), db=str(fresh), from_warc=warc_files))["articles_new"] == 0


def test_archive_rotates_by_size_and_reads_back_every_record(tmp_path):
    from flows.archive import WarcArchive
    from flows.fetch import Response

    archive = WarcArchive(tmp_path / "warc", tmp_path, max_bytes=2_000)
    spots = []
    for i in range(12):
        body = f"<html><body><p>page {i} ".encode() + bytes(range(256)) * 4 + b"</p></body></html>"
        spots.append((archive.write(Response(url=f"http://x.example/{i}", final_url=f"http://x.example/{i}",
                                             status=200, headers={"content-type": "text/html",
                                                                  "content-encoding": "gzip"}, body=body)), body))
    files = sorted((tmp_path / "warc").glob("*.warc.gz"))
    assert len(files) > 1 and all(f.stat().st_size < 2_000 + 2_000 for f in files)
    for (location, offset), body in spots:
        record = read_at(str(resolve(location, tmp_path)), offset)
        assert record.body == body and "content-encoding" not in record.headers  # stored decoded
    assert sum(1 for f in files for _ in iter_responses(str(f))) == 12
