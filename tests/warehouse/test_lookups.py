"""Lookups by a list of keys read the keys, not the history (DuckDB's profiler on a
real file of 250,000 articles and sightings: two row groups and more)."""

import shutil
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from flows.settings import StorySettings
from tests.warehouse.profiling import Profiled, rows_scanned
from transforms.fingerprints import fingerprint
from transforms.records import Article, BatchRows, Sighting
from warehouse import article_rows, lookups, run_rows
from warehouse.connection import connect

ROWS = 250_000
ROW_GROUP_ROWS = 122_880  # DuckDB's rows per row group
P = StorySettings().params()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    db = tmp_path_factory.mktemp("lookups") / "wh.duckdb"
    with connect(db) as con:
        # Keys in random order (md5), as real URLs and hashes are: row-group
        # min/max cannot skip anything, only an index can.
        con.execute(f"""
            INSERT INTO articles (article_id, url, source, published_at, published_date, date_source, body,
                                  body_source, word_count, content_hash, first_seen_at, run_id, extractor, story_id)
            SELECT substr(md5(i::VARCHAR), 1, 20), 'https://x.example/' || md5('u' || i), 'feed' || (i % 50),
                   TIMESTAMPTZ '2026-01-01', DATE '2026-01-01', 'feed', 'body ' || i, 'page', 2, sha256(i::VARCHAR),
                   TIMESTAMPTZ '2026-01-01' + i * INTERVAL 1 SECOND, 'r', 'x', substr(md5(i::VARCHAR), 1, 20)
            FROM range({ROWS}) t(i)""")
        con.execute(f"""
            INSERT INTO article_sightings (source, canonical_link, article_id, url, guid, seen_at, run_id)
            SELECT 'feed' || (i % 50), 'https://x.example/' || md5('u' || i), substr(md5(i::VARCHAR), 1, 20),
                   'https://x.example/' || md5('u' || i), 'guid-' || md5('g' || i),
                   TIMESTAMPTZ '2026-01-01' + i * INTERVAL 1 SECOND, 'r'
            FROM range({ROWS}) t(i)""")
        con.execute("CHECKPOINT")
    return db


CASES = [
    ("SELECT url, article_id FROM articles", "url", "articles", lambda i: f"https://x.example/{_md5(f'u{i}')}"),
    ("SELECT content_hash, article_id, body_source FROM articles", "content_hash", "articles", lambda i: _sha(str(i))),
    ("SELECT source, canonical_link, article_id FROM article_sightings", "canonical_link", "article_sightings",
     lambda i: f"https://x.example/{_md5(f'u{i}')}"),
    ("SELECT source, guid, article_id FROM article_sightings", "guid", "article_sightings",
     lambda i: f"guid-{_md5(f'g{i}')}"),
    ("SELECT article_id, title FROM articles", "article_id", "articles", lambda i: _md5(str(i))[:20]),
]


def _md5(text: str) -> str:
    import hashlib
    return hashlib.md5(text.encode()).hexdigest()


def _sha(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("select, column, table, key", CASES, ids=[c[1] for c in CASES])
def test_a_lookup_reads_its_keys_not_the_column(big, tmp_path, select, column, table, key):
    stored = [key(i) for i in range(0, ROWS, ROWS // 40)]  # 40 stored keys spread over the table
    missing = [key(ROWS + i) for i in range(40)]  # and 40 new ones
    with connect(big, read_only=True) as con:
        con.execute(f"SET temp_directory = '{tmp_path}'")
        found = []
        scanned = rows_scanned(con, lambda: found.extend(lookups.lookup(con, select, column, stored + missing,
                                                                        chunk=80)))
        position = 0 if column in ("url", "content_hash", "article_id") else 1
        assert sorted(r[position] for r in found) == sorted(stored)
        assert scanned[table] <= 80, scanned  # each key is one index probe: at most its row
        # The same question as a semi-join on a registered table (what these
        # checks were) reads the whole column.
        con.register("_keys", pa.table({"k": stored + missing}))
        joined = rows_scanned(con, lambda: con.execute(
            f"{select} WHERE {column} IN (SELECT k FROM _keys)").fetchall())
        assert joined[table] > ROWS / 2, joined


def test_a_full_chunk_of_keys_is_still_index_probes(big, tmp_path):
    # 500 keys (the chunk) that each match a row: still under DuckDB's
    # index_scan_max_count, so still an Index Scan, not the whole column.
    select, column, table, key = CASES[0]
    keys = [key(i) for i in range(0, ROWS, ROWS // 500)][:500]
    with connect(big, read_only=True) as con:
        con.execute(f"SET temp_directory = '{tmp_path}'")
        found = []
        scanned = rows_scanned(con, lambda: found.extend(lookups.lookup(con, select, column, keys)))
    assert len(found) == 500 and scanned[table] <= 500, scanned


def test_the_run_report_reads_the_runs_row_groups_not_the_history(big, tmp_path):
    # The fixture's articles and sightings were first seen one a second from
    # 2026-01-01; a run that started 10 minutes before the last of them.
    with connect(big) as con:
        last = con.execute("SELECT max(first_seen_at) FROM articles").fetchone()[0]
        con.execute("INSERT INTO runs (run_id, started_at, status) VALUES ('r', ?, 'completed')",
                    [last - timedelta(minutes=10)])
        con.execute("INSERT INTO feed_polls (run_id, source, fetched_at, ok, not_modified, entries, new_entries)"
                    " VALUES ('r', 'feed7', ?, true, false, 1, 1)", [last])
    with connect(big, read_only=True) as con:
        con.execute(f"SET temp_directory = '{tmp_path}'")
        report = []
        scanned = rows_scanned(con, lambda: report.extend(run_rows.select_run_feeds(con, "r")))
    # A run's rows are stamped after it started (less an hour of slack for
    # the clock): those of feed7 among the last 70 minutes of seconds.
    expected = sum(1 for i in range(ROWS) if i % 50 == 7 and i >= ROWS - 1 - 70 * 60)
    assert [(r["source"], r["articles_new"]) for r in report] == [("feed7", expected)]
    # Every row has run_id 'r', but only the row group(s) of the run's last
    # hour and ten minutes are read: the run's rows, not the history.
    assert scanned["articles"] <= 2 * ROW_GROUP_ROWS < ROWS, scanned
    assert scanned["article_sightings"] <= 2 * ROW_GROUP_ROWS, scanned


def test_an_upgrade_reads_its_articles_not_the_history(big, tmp_path):
    # Retries fetched the pages of two feed-text articles: each page body
    # replaces the feed text (the old version kept in article_revisions),
    # and the fingerprint and the root's band keys are replaced.
    db = tmp_path / "wh.duckdb"
    shutil.copy(big, db)
    targets = [_md5(str(i))[:20] for i in (ROWS // 3, ROWS - 3)]
    with connect(db) as con:
        con.execute("UPDATE articles SET body_source = 'feed' WHERE article_id IN (?, ?)", targets)
        con.execute("CHECKPOINT")
        stored = article_rows.select_articles(con, targets)
    texts = {t: " ".join(f"w{n}-{i}" for i in range(200)) for n, t in enumerate(targets)}
    pages = [Article(article_id=t, url=stored[t]["url"], source=stored[t]["source"], title="t", author=None,
                     published_at=stored[t]["published_at"], published_date=stored[t]["published_date"],
                     date_source="page", date_note=None, language="en", body=texts[t], body_source="page",
                     body_note=None, word_count=200, content_hash=_sha(texts[t]),
                     first_seen_at=stored[t]["first_seen_at"], run_id="r2", extractor="x",
                     fingerprint=fingerprint(texts[t], P)) for t in targets]
    with connect(db) as con:
        con.execute(f"SET temp_directory = '{tmp_path}'")
        profiled = Profiled(con)
        article_rows.load_batch(profiled, BatchRows(upgrades=pages))
        assert sorted(con.execute("SELECT article_id, body, body_source FROM articles WHERE body_source = 'page' "
                                  "AND article_id IN (?, ?)", targets).fetchall()) == sorted(
            (t, texts[t], "page") for t in targets)
        assert sorted(con.execute("SELECT article_id, reason, body_source FROM article_revisions").fetchall()) == (
            sorted((t, "upgrade", "feed") for t in targets))
        assert con.execute("SELECT count(*), count(DISTINCT story_id) FROM story_bands").fetchone() == (
            2 * P.bands, 2)
        assert con.execute("SELECT count(*) FROM articles WHERE body_source = 'page'").fetchone()[0] == ROWS
    # Each statement reads the upgraded articles' rows by key, not every row.
    assert profiled.scanned.get("articles", 0) <= 20, profiled.scanned


def test_a_batch_load_reads_its_keys_not_the_history(big, tmp_path):
    # 40 new articles, each seen in a feed, and one entry seen again (its
    # sighting is already stored: kept as it was). DuckDB 1.5 checks
    # `ON CONFLICT` on a two-column key (article_sightings' (source,
    # canonical_link)) by a hash join over the whole table.
    db = tmp_path / "wh.duckdb"
    shutil.copy(big, db)
    when = datetime(2026, 2, 1, tzinfo=timezone.utc)
    texts = [" ".join(f"n{n}w{i}" for i in range(200)) for n in range(40)]
    articles = [Article(article_id=_md5(f"new{n}")[:20], url=f"https://x.example/{_md5(f'new{n}')}", source="feed1",
                        title="t", author=None, published_at=when, published_date=when.date(), date_source="feed",
                        date_note=None, language="en", body=text, body_source="page", body_note=None, word_count=200,
                        content_hash=_sha(text), first_seen_at=when, run_id="r2", extractor="x",
                        fingerprint=fingerprint(text, P), story_id=_md5(f"new{n}")[:20]) for n, text in enumerate(texts)]
    sightings = [Sighting(article_id=a.article_id, source="feed1", url=a.url, canonical_link=a.url, guid=None,
                          seen_at=when, run_id="r2") for a in articles]
    again = Sighting(article_id="other", source="feed7", url="u", canonical_link=f"https://x.example/{_md5('u7')}",
                     guid=None, seen_at=when, run_id="r2")  # (feed7, link 7) is stored, for article 7
    with connect(db) as con:
        con.execute(f"SET temp_directory = '{tmp_path}'")
        profiled = Profiled(con)
        article_rows.load_batch(profiled, BatchRows(articles=articles, sightings=[*sightings, again, sightings[0]]))
        assert con.execute("SELECT count(*) FROM article_sightings").fetchone()[0] == ROWS + 40
        assert con.execute("SELECT article_id, run_id FROM article_sightings WHERE canonical_link = ?",
                           [again.canonical_link]).fetchall() == [(_md5("7")[:20], "r")]
        assert con.execute("SELECT count(*) FROM story_bands").fetchone()[0] == 40 * P.bands
    assert all(rows <= 200 for rows in profiled.scanned.values()), profiled.scanned
