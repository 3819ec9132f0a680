from dataclasses import replace
from datetime import datetime, timezone

import duckdb
import pytest

from tests.transforms.test_articles import entry
from transforms.articles import build_article
from transforms.dedupe import sighting
from transforms.records import BatchRows, Failure, FeedPoll, RunCounts, SourceState
from warehouse import article_rows, feed_registry, lookups, outbox, run_rows
from warehouse.connection import connect
from warehouse.schema import SCHEMA_VERSION, SchemaTooNew, migrate, schema_version

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "wh.duckdb"


def test_schema_applies_twice_and_records_its_version(db):
    with connect(db) as con:
        assert schema_version(con) == SCHEMA_VERSION
        assert migrate(con) == SCHEMA_VERSION  # second time: nothing to do
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"sources", "articles", "article_sightings", "runs", "failures", "schema_migrations"} <= tables
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION
    with connect(db) as con:  # reopening migrates nothing again
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION


def test_refuses_a_newer_schema(db):
    with connect(db) as con:
        con.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
    with pytest.raises(SchemaTooNew, match="newer"):
        with connect(db):
            pass


def _foreign(path):
    """A DuckDB file of some other program, with an `articles` table of its own."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE articles (id INTEGER, headline VARCHAR)")
    con.execute("INSERT INTO articles VALUES (1, 'theirs')")
    con.close()
    return path


def _tables(path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
    finally:
        con.close()


def test_a_foreign_duckdb_file_is_refused_and_left_unchanged(tmp_path):
    from warehouse.connection import NotAWarehouse

    foreign = _foreign(tmp_path / "theirs.duckdb")
    before = foreign.read_bytes()
    with pytest.raises(NotAWarehouse, match="not a newsdesk warehouse"):
        with connect(foreign):
            pass
    assert foreign.read_bytes() == before
    assert _tables(foreign) == ["articles"]  # no schema_migrations added


def test_an_empty_duckdb_file_is_initialised(tmp_path):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with connect(empty) as con:
        assert schema_version(con) == SCHEMA_VERSION


def _batch():
    e = entry(source="a", link="https://x.example/1?utm_source=a", canonical_link="https://x.example/1", guid="g1")
    art = build_article(e, None, page_problem="http_404", run_id="run-1", now=NOW)
    s = sighting(e, art.article_id, run_id="run-1", now=NOW)
    f = Failure(run_id="run-1", stage="fetch", url=e.link, source="a", reason="http_404", error="Not Found",
                at=NOW, transient=False, outcome="feed_fallback")
    return e, art, s, f


def test_load_batch_is_idempotent_and_typed(db):
    e, art, s, f = _batch()
    with connect(db) as con:
        article_rows.load_batch(con, BatchRows(articles=[art], sightings=[s], failures=[f]))
        article_rows.load_batch(con, BatchRows(articles=[art], sightings=[s]))
        assert con.execute("SELECT count(*) FROM articles").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM article_sightings").fetchone()[0] == 1
        row = con.execute("SELECT published_at, published_date, typeof(published_at), body_source, body_note FROM articles").fetchone()
        assert row[0] == e.published_at and str(row[1]) == "2023-09-11"
        assert row[2] == "TIMESTAMP WITH TIME ZONE"
        assert row[3:] == ("feed", "http_404")
        assert con.execute('SELECT reason, outcome, "at" FROM failures').fetchall() == [("http_404", "feed_fallback", NOW)]


def test_load_batch_is_all_or_nothing(db):
    _e, art, s, _f = _batch()
    broken = replace(art, article_id="other", body=None)  # violates NOT NULL
    with connect(db) as con:
        with pytest.raises(duckdb.Error):
            article_rows.load_batch(con, BatchRows(articles=[art, broken], sightings=[s]))
        assert con.execute("SELECT count(*) FROM articles").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM article_sightings").fetchone()[0] == 0


def test_known_keys_queries(db):
    e, art, s, _f = _batch()
    other = entry(source="b", link="https://x.example/1", canonical_link="https://x.example/1", guid="zz")
    with connect(db) as con:
        article_rows.load_batch(con, BatchRows(articles=[art], sightings=[s]))
        known = lookups.select_known_for_entries(con, [e, other])
        assert known.by_url == {"https://x.example/1": art.article_id}
        assert known.sighted_links == {("a", "https://x.example/1")}
        assert known.sighted_guids == {("a", "g1")}
        # Only page bodies are matched by hash: this one is feed text.
        assert art.body_source == "feed"
        assert lookups.select_known_articles(con, [], [art.content_hash]).by_hash == {}
        page = replace(art, article_id="p1", url="https://x.example/p", body="A page body.", content_hash="h-page",
                       body_source="page")
        article_rows.load_batch(con, BatchRows(articles=[page]))
        by_hash = lookups.select_known_articles(con, [], [art.content_hash, "h-page", "nope"])
        assert by_hash.by_hash == {"h-page": "p1"}
        assert lookups.select_known_articles(con, [], []).by_hash == {}


def test_sources_and_runs(db):
    with connect(db) as con:
        feed_registry.upsert_sources(con, [{"name": "a", "url": "https://a.example/feed", "tags": ["x"]}])
        feed_registry.upsert_sources(con, [{"name": "a", "url": "https://a.example/feed2", "language": "en"}])
        feed_registry.update_source_states(con, [SourceState("a", NOW, 200, ok=True, etag='"v1"', last_modified="Mon", title="A")])
        feed_registry.update_source_states(con, [SourceState("a", NOW, 304, ok=True)])  # 304 keeps validators
        feed_registry.update_source_states(con, [SourceState("a", NOW, 500, ok=False, error="boom")])
        state = feed_registry.select_feed_state(con)["a"]
        assert (state.etag, state.last_modified, state.consecutive_failures) == ('"v1"', "Mon", 1)
        assert state.next_attempt_at is None  # the caller sets the backoff
        row = con.execute("SELECT url, language, title, last_status, last_error, consecutive_failures, last_success_at FROM sources").fetchone()
        assert row == ("https://a.example/feed2", "en", "A", 500, "boom", 1, NOW)
        run_rows.start_run(con, "r1", NOW, None)
        run_rows.finish_run(con, "r1", finished_at=NOW, status="completed", counts=RunCounts(articles_new=3))
        run = run_rows.select_run(con, "r1")
        assert run["status"] == "completed" and run["articles_new"] == 3 and run["failures"] == 0


def test_read_only_connection_cannot_write(db):
    with connect(db):
        pass
    with connect(db, read_only=True) as con:
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM articles")
    with pytest.raises(FileNotFoundError):
        with connect(db.parent / "missing.duckdb", read_only=True):
            pass


def test_page_attempts_upsert_due_and_upgrade(db):
    from datetime import timedelta

    from transforms.records import PageAttempt

    e, art, s, _f = _batch()
    pending = PageAttempt(entry=e, article_id=art.article_id, status="pending", attempts=1, last_reason="timeout",
                          last_error="ReadTimeout", first_failed_at=NOW, last_attempt_at=NOW,
                          next_attempt_at=NOW + timedelta(minutes=15))
    with connect(db) as con:
        article_rows.load_batch(con, BatchRows(articles=[art], sightings=[s], attempts=[pending]))
        assert outbox.select_due_attempts(con, NOW) == []
        due = outbox.select_due_attempts(con, NOW + timedelta(hours=1))
        assert [d.entry for d in due] == [e] and due[0].article_id == art.article_id
        # The entry is now known to its feed, so the feed does not re-offer it.
        assert ("a", e.canonical_link) in lookups.select_known_for_entries(con, [e]).sighted_links
        # A second failure updates the same row.
        article_rows.load_batch(con, BatchRows(attempts=[replace(pending, attempts=2, article_id=None)]))
        assert con.execute("SELECT attempts, article_id FROM page_attempts").fetchall() == [(2, art.article_id)]
        # The page arrives: the same article row is upgraded, the attempt settled.
        page_version = replace(art, body="The page body.", body_source="page", body_note=None, content_hash="h2",
                               extractor="trafilatura x", word_count=3)
        article_rows.load_batch(con, BatchRows(upgrades=[page_version], settled=[("a", e.canonical_link)]))
        assert con.execute("SELECT count(*), any_value(body), any_value(body_source) FROM articles").fetchone() == (
            1, "The page body.", "page")
        assert con.execute("SELECT count(*) FROM page_attempts").fetchone() == (0,)
        # A second upgrade aimed at a row that already has its page body changes nothing.
        article_rows.load_batch(con, BatchRows(upgrades=[replace(page_version, body="Another page.", content_hash="h3")]))
        assert con.execute("SELECT body FROM articles").fetchone() == ("The page body.",)
        # The feed-text version that the page replaced is kept, once.
        assert con.execute("SELECT reason, body_source, body FROM article_revisions").fetchall() == [
            ("upgrade", "feed", art.body)]


def test_views_exist_and_balance(db):
    with connect(db) as con:
        feed_registry.upsert_sources(con, [{"name": "a", "url": "https://a.example/feed"}])
        feed_registry.insert_feed_polls(con, [
            FeedPoll(**{"run_id": "r1", "source": "a", "fetched_at": NOW, "status": 200, "ok": True, "not_modified": False,
             "error": None, "entries": 4, "new_entries": 4}),
            FeedPoll(**{"run_id": "r2", "source": "a", "fetched_at": NOW, "status": 304, "ok": True, "not_modified": True,
             "error": None, "entries": 0, "new_entries": 0}),
            FeedPoll(**{"run_id": "r3", "source": "a", "fetched_at": NOW, "status": 500, "ok": False, "not_modified": False,
             "error": "boom", "entries": 0, "new_entries": 0}),
        ])
        health = con.execute("SELECT polls, success_rate, share_304, new_items_per_poll FROM feed_health").fetchone()
        assert health == (3, 0.667, 0.333, 2.0)
        run_rows.start_run(con, "r1", NOW, None)
        run_rows.finish_run(con, "r1", finished_at=NOW, status="completed",
                        counts=RunCounts(entries_seen=5, entries_known=1, articles_new=2, duplicates=1, entries_pending=1))
        assert con.execute("SELECT accounted, balanced FROM run_accounting").fetchone() == (5, True)


def test_the_runs_columns_are_the_run_counters(db):
    """One list of run counters (transforms.records.RunCounts): the `runs`
    table has a column for each stored one, and no count column beyond them."""
    from transforms.records import RUN_COLUMNS

    with connect(db) as con:
        columns = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
    lifecycle = {"run_id", "flow_run_id", "started_at", "finished_at", "status", "error", "worker"}
    assert columns - lifecycle == set(RUN_COLUMNS), (
        "a counter of RunCounts needs a `runs` column (a migration in warehouse/schema.py, then LAKE_VERSION), "
        "and a column a counter, or metadata={'stored': False} on the field")


def test_every_runs_column_is_in_the_docs(db):
    """docs/warehouse.md's `runs` table names every column the table has."""
    from tests.conftest import REPO

    text = (REPO / "docs" / "warehouse.md").read_text(encoding="utf-8")
    section = text.split("### `runs`", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    with connect(db) as con:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()]
    assert [c for c in columns if f"`{c}`" not in section] == []
