"""Feeds imported from OPML are polled beside the sources file's, exported
back, removed and added again, on both backends."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.flows.helpers import assert_accounting, query, run_ingest, write_sources
from transforms.opml import read_opml

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

_WORDS = ("The council met on Tuesday to discuss the new bridge over the river, which engineers say will carry "
          "twice the traffic of the old one and open next spring after two years of work on its foundations. ")


def _serve(server, name: str, hits: dict) -> str:
    items = ""
    for i in range(2):
        page = server.route(f"/{name}/{i}.html", (
            f"<html><head><title>{name} {i}</title></head><body><article><h1>{name} story {i}</h1>"
            f"<p>{name} {i}. {_WORDS * 3}</p></article></body></html>").encode(), content_type="text/html")
        items += f"<item><title>{name} story {i}</title><link>{page}</link></item>"
    feed = f'<rss version="2.0"><channel><title>{name}</title>{items}</channel></rss>'.encode()

    def reply(req):
        from tests.httpserver import Reply

        hits[name] = hits.get(name, 0) + 1
        return Reply(200, feed, {"Content-Type": "application/rss+xml"})
    return server.route(f"/feeds/{name}.xml", reply)


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_imported_feeds_are_polled_exported_removed_and_added_back(server, tmp_path, make_db):
    hits: dict[str, int] = {}
    urls = {name: _serve(server, name, hits) for name in ("alpha", "beta", "gamma", "filed")}
    opml = tmp_path / "list.opml"
    opml.write_text(f"""<?xml version="1.0"?>
<opml version="2.0"><head><title>t</title></head><body>
  <outline text="Local"><outline text="Alpha" xmlUrl="{urls['alpha']}"/>
    <outline text="Beta" xmlUrl="{urls['beta']}" category="Evening"/></outline>
  <outline text="Gamma" xmlUrl="{urls['gamma']}"/>
  <outline text="Gamma again" xmlUrl="{urls['gamma']}"/>
  <outline text="Filed" xmlUrl="{urls['filed']}"/>
  <outline text="a folder with nothing"/>
</body></opml>""", encoding="utf-8")
    # One feed is in the sources file too: it stays the file's, and is not imported twice.
    sources = write_sources(tmp_path / "s.toml", [("filed", urls["filed"])])
    db = str(make_db("opml"))

    code, out, err = _cli("feeds", "import", str(opml), "--db", db, "--sources", str(sources), "--tag", "night")
    assert code == 0, err
    assert "imported 3 feeds" in out and "1 already registered, 2 skipped" in out
    assert "is listed again" in err and "has no xmlUrl" in err

    first = run_ingest(sources, db)
    assert (first["feeds_total"], first["feeds_ok"], first["articles_new"]) == (4, 4, 8)
    assert_accounting(first)
    assert hits == {"alpha": 1, "beta": 1, "gamma": 1, "filed": 1}
    assert query(db, "SELECT source, count(*) FROM articles GROUP BY 1 ORDER BY 1") == [
        ("alpha", 2), ("beta", 2), ("filed", 2), ("gamma", 2)]
    assert query(db, "SELECT name, origin, tags FROM sources ORDER BY name") == [
        ("alpha", "opml", ["Local", "night"]), ("beta", "opml", ["Local", "Evening", "night"]),
        ("filed", "sources file", []), ("gamma", "opml", ["night"])]

    code, out, err = _cli("feeds", "export", "--db", db, "--sources", str(sources))
    assert code == 0, err
    exported = {o.url: o.tags for o in read_opml(out.encode()).outlines}
    assert exported == {urls["alpha"]: ("Local", "night"), urls["beta"]: ("Local", "Evening", "night"),
                        urls["gamma"]: ("night",), urls["filed"]: ()}

    code, out, err = _cli("feeds", "remove", "beta", "--db", db)
    assert code == 0 and "removed 1 feed" in out, err
    code, _, err = _cli("feeds", "remove", "filed", "gamma", "--db", db)
    assert code == 2 and "from the sources file" in err and "nothing was removed" in err
    code, _, err = _cli("feeds", "remove", "gamma", "nosuch", "--db", db)
    assert code == 2 and "no registered feed is named 'nosuch'" in err
    assert query(db, "SELECT name FROM sources WHERE NOT active") == [("beta",)]  # all or nothing

    second = run_ingest(sources, db, all_feeds=True)
    assert second["feeds_total"] == 3 and hits["beta"] == 1 and hits["alpha"] == 2
    assert_accounting(second)
    assert query(db, "SELECT count(*) FROM articles WHERE source = 'beta'") == [(2,)]  # its articles stay

    code, out, err = _cli("feeds", "import", str(opml), "--db", db, "--sources", str(sources), "--tag", "later")
    assert code == 0 and "imported 0 feeds" in out, err
    assert "3 given new tags, 1 removed before, polled again" in out
    assert query(db, "SELECT tags FROM sources WHERE name = 'beta'") == [(["Local", "Evening", "night", "later"],)]
    third = run_ingest(sources, db, all_feeds=True)
    assert third["feeds_total"] == 4 and hits["beta"] == 2 and third["articles_new"] == 0
    assert query(db, "SELECT count(*), count(DISTINCT url) FROM articles") == [(8, 8)]


def test_a_file_that_is_not_opml_is_refused_with_exit_2(tmp_path):
    bad = tmp_path / "feeds.opml"
    bad.write_text("<rss><channel/></rss>")
    code, _, err = _cli("feeds", "import", str(bad), "--db", str(tmp_path / "w.duckdb"))
    assert code == 2 and "not <opml>" in err
    assert not (tmp_path / "w.duckdb").exists()


def test_removing_from_a_warehouse_that_does_not_exist_creates_none(tmp_path):
    code, _, err = _cli("feeds", "remove", "x", "--db", str(tmp_path / "none.duckdb"))
    assert code == 2 and "no warehouse at" in err
    assert not (tmp_path / "none.duckdb").exists()
