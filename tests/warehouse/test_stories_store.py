"""Fingerprints, band keys and stories in a real DuckDB file."""

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa

from flows.settings import StorySettings
from flows.stories import cluster_backlog, cluster_new
from tests.transforms.test_articles import entry
from transforms.articles import build_article
from transforms.fingerprints import StoryParams, fingerprint
from transforms.records import BatchRows
from warehouse import arrow_rows, article_rows, story_rows
from warehouse.connection import connect
from warehouse.schema import MIGRATIONS

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
P = StorySettings().params()
WORDS = [f"w{i}" for i in range(5000)]


def body(seed: int, n: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


def article(n: int, text: str, minutes: int = 0, params: StoryParams = P):
    e = entry(source=f"feed{n % 3}", link=f"https://x.example/{n}", canonical_link=f"https://x.example/{n}",
              guid=f"g{n}", feed_text=text)
    a = build_article(e, None, page_problem=None, run_id="r1", now=NOW + timedelta(minutes=minutes))
    return replace(a, fingerprint=fingerprint(a.body, params))


def load_clustered(con, articles, params=P):
    clustered, near = cluster_new(con, articles, params)
    article_rows.load_batch(con, BatchRows(articles=clustered))
    return clustered, near


def test_candidates_come_from_a_band_key_join_and_only_roots_are_indexed(tmp_path):
    base = body(1)
    with connect(tmp_path / "wh.duckdb") as con:
        first, near = load_clustered(con, [article(1, base), article(2, body(2))])
        assert near == 0
        copy = article(3, " ".join(base.split()[:250]) + " extra words here", minutes=5)
        [joined], near = load_clustered(con, [copy])
        assert near == 1 and joined.story_id == first[0].article_id == joined.duplicate_of
        # Two roots with 42 band keys each; the member adds a fingerprint, no keys.
        assert con.execute("SELECT count(*), count(DISTINCT story_id) FROM story_bands").fetchone() == (2 * P.bands, 2)
        assert con.execute("SELECT count(*) FROM article_fingerprints").fetchone()[0] == 3
        roots = story_rows.select_story_roots(con, list(copy.fingerprint.band_keys), P.scheme, None)
        assert {r.story_id for rs in roots.values() for r in rs} == {first[0].article_id}
        assert {r.first_seen_at for rs in roots.values() for r in rs} == {first[0].first_seen_at}
        # Signatures of another scheme are never candidates.
        assert story_rows.select_story_roots(con, list(copy.fingerprint.band_keys), "other", None) == {}
        # Nor are roots first seen outside the window asked for.
        later = (NOW + timedelta(days=31), NOW + timedelta(days=40))
        assert story_rows.select_story_roots(con, list(copy.fingerprint.band_keys), P.scheme, later) == {}
        row = con.execute("SELECT story_id, articles, sources FROM stories WHERE articles = 2").fetchone()
        assert row == (first[0].article_id, 2, 2)


def test_a_copy_joins_only_a_story_first_seen_within_the_window(tmp_path):
    base = body(1)
    day = 24 * 60
    with connect(tmp_path / "wh.duckdb") as con:
        [root], _ = load_clustered(con, [article(1, base)])
        [near], joined = load_clustered(con, [article(2, " ".join(base.split()[:280]), minutes=29 * day)])
        assert joined == 1 and near.story_id == root.article_id
        # 31 days on, the same text starts a story of its own, and later
        # copies join that one.
        [late], joined = load_clustered(con, [article(3, base, minutes=31 * day)])
        assert joined == 0 and late.story_id == late.article_id
        [later], joined = load_clustered(con, [article(4, " ".join(base.split()[:290]), minutes=45 * day)])
        assert joined == 1 and later.story_id == late.article_id
        # The band keys carry each root's first sighting.
        assert sorted(set(con.execute("SELECT story_id, first_seen_at FROM story_bands").fetchall())) == sorted(
            [(root.article_id, root.first_seen_at), (late.article_id, late.first_seen_at)])
    # window_days = 0: no window, the old story is found however old.
    unlimited = StorySettings(window_days=0).params()
    with connect(tmp_path / "wh2.duckdb") as con:
        [root], _ = load_clustered(con, [article(1, base)], unlimited)
        [copy], joined = load_clustered(con, [article(3, base, minutes=400 * day)], unlimited)
        assert joined == 1 and copy.story_id == root.article_id


def test_backlog_clusters_a_warehouse_from_before_stories(tmp_path):
    db = tmp_path / "wh.duckdb"
    base = body(1)
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description VARCHAR NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL)")
    for version, description, ddl in MIGRATIONS[:2]:  # a version-2 warehouse, with articles
        con.execute(ddl)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, description])
    old = [article(1, base), article(2, body(2), 1), article(3, " ".join(base.split()[:280]), 2)]
    v2_columns = pa.schema([f for f in arrow_rows.ARTICLE_SCHEMA
                            if f.name not in ("story_id", "duplicate_of", "story_similarity", "warc_file", "warc_offset",
                                                  "published_raw")])
    con.register("_a", arrow_rows.to_arrow(old, v2_columns))
    con.execute("INSERT INTO articles BY NAME SELECT * FROM _a")
    con.close()

    assert cluster_backlog(db, P, chunk=2) == 3  # two chunks
    with connect(db, read_only=True) as con:
        rows = con.execute("SELECT article_id, story_id, duplicate_of FROM articles ORDER BY first_seen_at").fetchall()
    a1, a2, a3 = (a.article_id for a in old)
    assert rows == [(a1, a1, None), (a2, a2, None), (a3, a1, a1)]
    assert cluster_backlog(db, P) == 0  # nothing left to do

    # New [dedupe] settings: every fingerprint is rebuilt, no story changes.
    other = replace(P, shingle_size=5, bands=32, rows=4)
    assert cluster_backlog(db, other) == 3
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT article_id, story_id, duplicate_of FROM articles "
                           "ORDER BY first_seen_at").fetchall() == rows
        assert con.execute("SELECT DISTINCT scheme FROM article_fingerprints").fetchall() == [(other.scheme,)]
        assert con.execute("SELECT count(*) FROM story_bands").fetchone()[0] == 2 * other.bands


def test_upgrade_replaces_the_fingerprint_of_a_feed_text_root(tmp_path):
    with connect(tmp_path / "wh.duckdb") as con:
        [root], _ = load_clustered(con, [article(1, "a short summary from the feed " * 3)])
        page_body = body(7)
        upgraded = replace(article(1, page_body), article_id=root.article_id, body_source="page")
        article_rows.load_batch(con, BatchRows(upgrades=[upgraded]))
        stored = con.execute("SELECT signature FROM article_fingerprints WHERE article_id = ?",
                             [root.article_id]).fetchone()[0]
        assert bytes(stored) == fingerprint(page_body, P).signature
        keys = {r[0] for r in con.execute("SELECT band_key FROM story_bands").fetchall()}
        assert keys == set(fingerprint(page_body, P).band_keys)
