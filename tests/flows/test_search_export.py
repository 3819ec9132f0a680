"""Search and exports on the ingested seeds."""

import json
from datetime import date

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import DATA, SEEDS, _new_lake, seed_document
from tests.flows.helpers import query, run_ingest

runner = CliRunner()


# One flow run on the seeds, shared by the module's tests: they are marked slow
# because the first of them pays for it and for the Prefect test harness.
# On both backends: the file, and a lake on the session's PostgreSQL.
@pytest.fixture(scope="module", params=["file", "lake"])
def seeded(request, tmp_path_factory, prefect_harness):
    if request.param == "file":
        db = tmp_path_factory.mktemp("seeded") / "wh.duckdb"
    else:
        db = _new_lake(request.getfixturevalue("postgres"), tmp_path_factory.mktemp("seeded"), "seeded")
    run_ingest(SEEDS / "sources.toml", db)
    return db


def search(db, *args):
    result = runner.invoke(app, ["search", *args, "--db", str(db), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[:result.output.rindex("]") + 1])


@pytest.mark.slow
def test_search_ranks_the_article_about_the_query_first(seeded):
    hits = search(seeded, "Putin Kremlin")
    assert hits[0]["title"] == "Kim Jong-Un travels to Russia to meet Putin"
    assert "Putin" in hits[0]["snippet"] or "Kremlin" in hits[0]["snippet"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    farmers = search(seeded, "farmers market November")
    assert farmers[0]["source"] == "riverton-chronicle" and "Farmers market" in farmers[0]["title"]
    assert search(seeded, "zzzyx") == []


@pytest.mark.slow
def test_search_filters(seeded):
    # Stemmed in Spanish: the singular finds "aficionados"; "de" is a Spanish stop word.
    spanish = search(seeded, "aficionado", "--language", "es")
    assert spanish and all(h["url"] for h in spanish)
    assert {r[0] for r in query(seeded, "SELECT language FROM articles WHERE url = ?", [spanish[0]["url"]])} == {"es"}
    assert search(seeded, "de", "--language", "es") == []
    assert search(seeded, "Putin", "--language", "es") == []
    assert search(seeded, "Putin", "--source", "riverton-chronicle") == []
    assert search(seeded, "Putin", "--since", "2023-09-12") == []
    assert search(seeded, "Putin", "--until", "2023-09-11")[0]["published_date"] == "2023-09-11"
    assert len(search(seeded, "new", "--limit", "2")) == 2
    assert search(seeded, "the") == []  # a stop word matches nothing
    bad = runner.invoke(app, ["search", "x", "--since", "yesterday", "--db", str(seeded)])
    assert bad.exit_code == 2 and "not a date" in bad.output


@pytest.mark.slow
def test_search_shows_one_row_per_story(seeded, tmp_path, make_lake):
    # Make the Spanish article a near-duplicate member of the seed article's story.
    from flows.search_index import rebuild, update
    from warehouse.connection import connect

    root = query(seeded, "SELECT article_id FROM articles WHERE published_date = '2023-09-11'")[0][0]
    change = ("UPDATE articles SET body = body || ' Putin Putin', story_id = ?, duplicate_of = ? "
              "WHERE language = 'es'")
    if isinstance(seeded, str):  # a lake of its own, moved in from a file copy, changed, indexed from the change feed
        db = make_lake("stories")
        copy = tmp_path / "copy.duckdb"
        run_ingest(SEEDS / "sources.toml", copy)
        assert runner.invoke(app, ["migrate", "--to", db, "--db", str(copy)]).exit_code == 0
        with connect(db) as con:
            rebuild(con, db)
            con.execute(change, [root, root])
            assert update(con, db).articles == 1  # the changed article, from the change feed
    else:
        db = tmp_path / "copy.duckdb"
        db.write_bytes(seeded.read_bytes())
        con = duckdb.connect(str(db))
        con.execute(change, [root, root])
        con.close()
        with connect(db) as con:  # the copy has no index beside it: build one
            rebuild(con, db)
    hits = search(db, "Putin")
    assert [h["title"] for h in hits].count("Kim Jong-Un travels to Russia to meet Putin") == 1
    assert len(hits) == len({h["url"] for h in hits})
    assert max(h["story_matches"] for h in hits) == 2


@pytest.mark.slow
def test_search_is_usable_from_sql(seeded):
    result = runner.invoke(app, ["sql", "--search", "Putin Kremlin", "SELECT a.title, h.rank FROM search_hits h "
                                 "JOIN articles a USING (article_id) ORDER BY h.score DESC LIMIT 1",
                                 "--db", str(seeded), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[:result.output.rindex("]") + 1]) == [
        {"title": "Kim Jong-Un travels to Russia to meet Putin", "rank": 1}]


def test_search_without_an_index_says_so(seeded, tmp_path, monkeypatch):
    if isinstance(seeded, str):  # a lake: another machine, which has no index of it yet
        monkeypatch.setenv("NEWSDESK_SEARCH_DIR", str(tmp_path / "elsewhere"))
        db = seeded
    else:
        db = tmp_path / "copy.duckdb"
        db.write_bytes(seeded.read_bytes())
    result = runner.invoke(app, ["search", "Putin", "--db", str(db)])
    assert result.exit_code == 2 and "newsdesk reindex" in result.output
    result = runner.invoke(app, ["reindex", "--db", str(db)])
    assert result.exit_code == 0 and "indexed 15 articles" in result.output, result.output
    assert search(db, "Putin")[0]["title"] == "Kim Jong-Un travels to Russia to meet Putin"


@pytest.mark.slow
def test_text_export_of_the_seed_article_equals_the_seed_document(seeded, tmp_path):
    result = runner.invoke(app, ["export", "--format", "text", "--out", str(tmp_path / "txt"), "--db", str(seeded)])
    assert result.exit_code == 0 and "exported 15 articles" in result.output
    day, body = seed_document()
    [path] = list((tmp_path / "txt" / day).glob("*.txt"))
    expected = (DATA / "seed-documents").glob("*.txt")
    assert path.read_text(encoding="utf-8").split() == next(iter(expected)).read_text(encoding="utf-8").split()
    assert len(list((tmp_path / "txt").rglob("*.txt"))) == 15


@pytest.mark.slow
def test_parquet_export_is_partitioned_by_day_and_incremental(seeded, tmp_path):
    out = tmp_path / "pq"
    assert runner.invoke(app, ["export", "-f", "parquet", "-o", str(out), "--db", str(seeded)]).exit_code == 0
    days = sorted(p.name for p in out.iterdir())
    assert days == [f"published_date={d[0]}" for d in query(seeded, "SELECT DISTINCT published_date::VARCHAR "
                                                              "FROM articles ORDER BY 1")]
    read = duckdb.sql(f"SELECT published_date, count(*) FROM read_parquet('{out}/**/*.parquet', "
                      "hive_partitioning = true) GROUP BY 1 ORDER BY 1").fetchall()
    assert read == [(d, n) for d, n in query(seeded, "SELECT published_date, count(*) FROM articles GROUP BY 1 ORDER BY 1")]
    # Re-export one day: that day's files are replaced, the others untouched.
    other = next(p for p in out.iterdir() if p.name != "published_date=2023-09-11")
    other_files = sorted(f.name for f in other.iterdir())
    before = sorted(f.name for f in (out / "published_date=2023-09-11").iterdir())
    args = ["export", "-f", "parquet", "-o", str(out), "--since", "2023-09-11", "--until", "2023-09-11", "--db", str(seeded)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "exported 1 article " in result.output
    after = sorted(f.name for f in (out / "published_date=2023-09-11").iterdir())
    assert len(after) == 1 and after != before
    assert sorted(f.name for f in other.iterdir()) == other_files
    total = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchone()[0]
    assert total == 15


@pytest.mark.slow
def test_jsonl_export(seeded, tmp_path):
    result = runner.invoke(app, ["export", "-f", "jsonl", "-o", str(tmp_path), "--since", "2023-09-10",
                                 "--db", str(seeded)])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in (tmp_path / "articles.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 and all(date.fromisoformat(r["published_date"]) >= date(2023, 9, 10) for r in rows)
    assert {"article_id", "url", "title", "body", "story_id", "published_at"} <= set(rows[0])
