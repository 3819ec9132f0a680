"""The incremental search index: runs index only what they loaded, the
result equals a full rebuild, a crash between the warehouse commit and the
index is healed by the next run, and words match in the article's language."""

from __future__ import annotations

import os

import pytest

import flows.search_index as search_index
import transforms.articles as articles_module
from flows.reextract import reextract
from flows.settings import load_settings
from tests.conftest import EXTRACTION
from tests.flows.helpers import query, run_ingest, write_sources
from tests.httpserver import LocalServer, Reply
from warehouse import search as store
from warehouse.connection import connect

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

# Bodies long enough for extraction and language detection; the words the
# tests look for appear only in an inflection the query does not use.
TEXTS = {
    "de": ("Neue Fahrradwege für die Stadt", [
        "Die Stadtverwaltung hat am Dienstag beschlossen, in den nächsten zwei Jahren zahlreiche neue Fahrradwege "
        "zu bauen. Die Bürgerinnen und Bürger hatten sich seit langem sicherere Strecken gewünscht.",
        "Besonders in den Wohnvierteln im Norden fehlen bisher Verbindungen zu den Schulen und Bäckereien. "
        "Der Bürgermeister sagte, die Planung werde gemeinsam mit den Anwohnern entwickelt.",
        "Kritiker bemängeln die hohen Kosten, doch die Mehrheit im Rat stimmte dem Vorhaben zu. "
        "Die ersten Arbeiten sollen im kommenden Frühjahr beginnen und vor dem Winter abgeschlossen sein."]),
    "it": ("Le biblioteche restano aperte la sera", [
        "Il consiglio comunale ha deciso che le biblioteche della città resteranno aperte fino a tarda sera "
        "durante tutto l'inverno. Gli studenti avevano chiesto più spazi per studiare insieme.",
        "L'assessore alla cultura ha spiegato che il personale sarà aumentato e che saranno organizzati "
        "incontri con gli autori ogni settimana. I cittadini potranno anche prendere in prestito giochi da tavolo.",
        "Secondo i dati dell'ultimo anno, i prestiti sono cresciuti di quasi un terzo rispetto al periodo "
        "precedente, soprattutto tra i giovani lettori dei quartieri periferici."]),
    "es": ("Los ciclistas llenan las calles del centro", [
        "Miles de ciclistas recorrieron este domingo las avenidas principales de la ciudad en una marcha "
        "organizada por las asociaciones de vecinos para pedir carriles más seguros.",
        "Los organizadores explicaron que la ruta pasaba por los mercados y las plazas más conocidas, y que "
        "muchas familias participaron con sus hijos durante toda la mañana.",
        "El ayuntamiento anunció que estudiará las propuestas presentadas y que publicará un plan de movilidad "
        "antes de que termine el año, después de escuchar a todos los grupos."]),
    "fr": ("Les boulangeries du quartier fêtent leur anniversaire", [
        "Les boulangeries du vieux quartier ont célébré samedi leurs cent ans d'histoire avec une grande fête "
        "sur la place du marché. Des centaines d'habitants sont venus goûter les pains anciens.",
        "Les artisans ont expliqué qu'ils utilisent toujours les mêmes fours et les mêmes recettes que leurs "
        "grands-parents, malgré la hausse du prix de la farine et de l'énergie.",
        "La mairie a promis de soutenir les commerces indépendants du centre en réduisant les loyers des "
        "locaux municipaux pendant les deux prochaines années."]),
    "en": ("Cyclist numbers rise on the river path", [
        "The number of people riding along the river path rose sharply this autumn, according to counts "
        "published by the council on Thursday. Officials said the new lighting had made evening trips safer.",
        "Residents who commute by bike told reporters that the path now feels busy even in the rain, and "
        "several shops near the bridge have added racks for visitors.",
        "The council plans to widen the narrowest sections next year and to add benches at the viewpoints, "
        "after a consultation that drew more than two thousand replies."]),
}
# (language, query in another inflection than the text's, title of the article it must find)
INFLECTED = [
    ("de", "Fahrradweg Bäckerei", TEXTS["de"][0]),
    ("it", "biblioteca", TEXTS["it"][0]),
    ("es", "ciclista", TEXTS["es"][0]),
    ("fr", "boulangerie", TEXTS["fr"][0]),
    ("en", "cyclists riders", TEXTS["en"][0]),
]
QUERIES = ["Fahrradweg", "biblioteca prestito", "ciclista ciudad", "boulangerie marché", "cyclist river",
           "council", "government said", "police", "the", "president election", "market prices", "water"]


def _html(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{body}</article></body></html>".encode()


class Site:
    """A feed whose items can change between runs, with its pages."""

    def __init__(self, server: LocalServer):
        self.server = server
        self.items: list[str] = []
        server.route("/feed.xml", lambda req: Reply(200, self._feed(), {"Content-Type": "application/rss+xml"}))

    def _feed(self) -> bytes:
        return f'<rss version="2.0"><channel><title>site</title>{"".join(self.items)}</channel></rss>'.encode()

    def add(self, path: str, title: str, page, description: str = "") -> None:
        self.server.route(path, page)
        self.items.append(f"<item><title>{title}</title><link>{self.server.url(path)}</link>"
                          f"<description>{description}</description></item>")

    def add_language(self, code: str, path: str | None = None, extra: str = "") -> None:
        title, paragraphs = TEXTS[code]
        self.add(path or f"/{code}.html", title, _html(title, paragraphs + ([extra] if extra else [])))

    def add_real(self, first: int, count: int) -> None:
        import gzip

        for i, page in enumerate(sorted((EXTRACTION / "html").glob("*.html.gz"))[first:first + count], first):
            self.add(f"/real/{i}.html", f"Real page {i}", gzip.decompress(page.read_bytes()))

    def sources(self, tmp_path):
        path = write_sources(tmp_path / "s.toml", [("site", self.server.url("/feed.xml"))])
        with path.open("a") as f:
            f.write("\n[retry]\npage_backoff_s = 0\n")
        return path


def _top(db, queries=QUERIES, k=10) -> dict[str, list[str]]:
    return {q: [h.article_id for h in search_index.hits(db, q)][:k] for q in queries}


def _assert_index_holds_each_article_once(db) -> None:
    indexed = search_index.indexed_ids(db)
    assert len(indexed) == len(set(indexed)), "an article is in the index twice"
    assert sorted(indexed) == sorted(r[0] for r in query(db, "SELECT article_id FROM articles"))
    assert query(db, "SELECT count(*) FROM search_queue") == [(0,)]


def test_incremental_index_equals_a_full_rebuild(tmp_path, monkeypatch):
    down = {"busy": True}
    busy_page = _html("Harbour works", ["The harbour works continue with a quayside crane and new moorings for the ferries. " * 20])

    def busy(req):
        return Reply(503, b"busy", {}) if down["busy"] else Reply(200, busy_page, {"Content-Type": "text/html"})

    db = tmp_path / "data" / "wh.duckdb"
    with LocalServer() as server:
        site = Site(server)
        for code in ("de", "it", "en"):
            site.add_language(code)
        site.add_real(0, 6)
        # Its page is down: loaded from the feed text now, upgraded next run.
        site.add("/busy.html", "Harbour works", busy, "Feed teaser about the zeppelinfield dock.")
        sources = site.sources(tmp_path)
        first = run_ingest(sources, db)
        assert first["articles_new"] == 10 and first["articles_from_feed"] == 1
        with connect(db, read_only=True) as con:
            assert search_index.in_sync(con, db)
        assert [h.article_id for h in search_index.hits(db, "zeppelinfield")]  # the feed text is searchable

        # Run 2: new articles, a page upgrade, and a near-duplicate joining a story.
        down["busy"] = False
        for code in ("es", "fr"):
            site.add_language(code)
        site.add_real(6, 4)
        site.add_language("de", "/de-copy.html", extra="Ein Sprecher der Stadt bestätigte die Pläne am Abend.")
        second = run_ingest(sources, db)
        assert second["articles_new"] == 7 and second["retries_loaded"] == 1 and second["near_duplicates"] >= 1
    # The replaced feed text is gone from the index, the page's words are in.
    assert search_index.hits(db, "zeppelinfield") == []
    assert [h.article_id for h in search_index.hits(db, "quayside moorings")] == [
        r[0] for r in query(db, "SELECT article_id FROM articles WHERE title = 'Harbour works'")]

    # Re-extraction with a changed extractor (offline) changes stored bodies.
    monkeypatch.setitem(articles_module.EXTRACT_OPTIONS, "include_comments", True)
    monkeypatch.setitem(articles_module.EXTRACT_OPTIONS, "favor_recall", True)
    assert reextract(db, load_settings(sources)).changed

    _assert_index_holds_each_article_once(db)
    incremental = _top(db)
    assert any(incremental.values())
    with connect(db) as con:
        rebuilt = search_index.rebuild(con, db)
    assert rebuilt.rebuilt and rebuilt.articles == 17
    assert _top(db) == incremental


def test_a_crash_between_the_warehouse_commit_and_the_index_is_healed(tmp_path, monkeypatch):
    db = tmp_path / "wh.duckdb"
    with LocalServer() as server:
        site = Site(server)
        site.add_language("en")
        sources = site.sources(tmp_path)
        run_ingest(sources, db)

        # Crash 1: the loads committed, the index never did.
        site.add_language("de")
        def crash(path):
            raise RuntimeError("the process died before the index committed")

        with monkeypatch.context() as m:
            m.setattr(search_index, "_open", crash)
            with pytest.raises(RuntimeError, match="process died"):
                run_ingest(sources, db)
        assert query(db, "SELECT count(*) FROM articles") == [(2,)]
        assert search_index.hits(db, "Fahrradweg") == []
        assert query(db, "SELECT count(*) FROM search_queue") == [(1,)]

        # Crash 2: the index committed, the queue was not cleared.
        site.add_language("fr")
        with monkeypatch.context() as m:
            m.setattr(store, "clear_queue", None)
            with pytest.raises(TypeError):
                run_ingest(sources, db)
        assert query(db, "SELECT count(*) FROM search_queue") == [(2,)]

        # The next run heals both: nothing missing, nothing twice.
        healed = run_ingest(sources, db)
        assert healed["articles_new"] == 0
    _assert_index_holds_each_article_once(db)
    for code, words, title in INFLECTED:
        if code in ("en", "de", "fr"):
            found = search_index.hits(db, words)
            assert len(found) == 1
            assert query(db, "SELECT title FROM articles WHERE article_id = ?", [found[0].article_id]) == [(title,)]


def test_queries_match_inflections_in_the_articles_language(tmp_path):
    db = tmp_path / "wh.duckdb"
    with LocalServer() as server:
        site = Site(server)
        for code in TEXTS:
            site.add_language(code)
        site.add_real(0, 8)
        run_ingest(site.sources(tmp_path), db)
    languages = dict(query(db, "SELECT title, language FROM articles"))
    with connect(db, read_only=True) as con:
        for code, words, title in INFLECTED:
            assert languages[title] == code
            for language in (code, None):  # in its language, and across all of them
                hits = search_index.search(con, db, words, language=language, limit=10)
                assert hits and hits[0]["title"] == title, (code, language, [h["title"] for h in hits])
        # English is not hurt: a stop word finds nothing, an English query no foreign article.
        assert search_index.search(con, db, "the") == []
        english = search_index.search(con, db, "river path benches viewpoints", limit=10)
        assert english[0]["title"] == TEXTS["en"][0]
        assert {languages.get(h["title"], "en") for h in english} == {"en"}
        assert search_index.search(con, db, "Fahrradweg", language="en") == []


def _segment_file(db, suffix: str):
    """One segment file of the index (the runs here commit one segment)."""
    found = sorted(search_index.index_dir(db).glob(f"*.{suffix}"))
    assert found, f"no .{suffix} file in the index"
    return found[0]


# How an index gets damaged: garbage where tantivy's meta.json was (the index
# cannot be opened), a segment's positions file gone (it opens, and searcher()
# works, but every word query fails), a segment file cut short (its footer).
DAMAGE = {
    "meta.json garbage": lambda db: (search_index.index_dir(db) / "meta.json").write_text("garbage\x00{"),
    "segment file deleted": lambda db: _segment_file(db, "pos").unlink(),
    "segment file truncated": lambda db: os.truncate(_segment_file(db, "idx"), _segment_file(db, "idx").stat().st_size // 2),
}


def _runs(db) -> list[tuple]:
    return query(db, "SELECT status, error FROM runs ORDER BY started_at")


def _assert_search_finds_every_article(db) -> None:
    _assert_index_holds_each_article_once(db)
    with connect(db, read_only=True) as con:
        for code in ("en", "de", "fr"):
            _, words, title = next(i for i in INFLECTED if i[0] == code)
            assert [h["title"] for h in search_index.search(con, db, words)] == [title]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_index_is_rebuilt_by_the_next_run(tmp_path, damage):
    from typer.testing import CliRunner

    from flows.cli import app

    db = tmp_path / "wh.duckdb"
    with LocalServer() as server:
        site = Site(server)
        site.add_language("en")
        site.add_language("de")
        sources = site.sources(tmp_path)
        run_ingest(sources, db)
        DAMAGE[damage](db)

        # A reader says what is wrong and what heals it, in one line.
        result = CliRunner().invoke(app, ["search", "cyclist", "--db", str(db)])
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1 and "newsdesk reindex" in result.output, result.output

        site.add_language("fr")
        healed = run_ingest(sources, db)
    assert healed["articles_new"] == 1
    assert [status for status, _ in _runs(db)] == ["completed", "completed"]
    _assert_search_finds_every_article(db)


def test_reindex_rebuilds_a_damaged_index(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    db = tmp_path / "wh.duckdb"
    with LocalServer() as server:
        site = Site(server)
        for code in ("en", "de", "fr"):
            site.add_language(code)
        run_ingest(site.sources(tmp_path), db)
    DAMAGE["segment file deleted"](db)
    result = CliRunner().invoke(app, ["reindex", "--sources", str(tmp_path / "s.toml"), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "indexed 3 articles" in result.output
    _assert_search_finds_every_article(db)


def test_a_failed_rebuild_fails_the_run_and_the_next_run_heals(tmp_path):
    db = tmp_path / "wh.duckdb"
    with LocalServer() as server:
        site = Site(server)
        site.add_language("en")
        site.add_language("de")
        sources = site.sources(tmp_path)
        run_ingest(sources, db)
        DAMAGE["meta.json garbage"](db)
        # A regular file where the rebuild stages the new index: it cannot be built.
        obstacle = search_index.index_dir(db).with_name(search_index.index_dir(db).name + ".building")
        obstacle.write_text("not a directory")
        site.add_language("fr")
        with pytest.raises(search_index.IndexUnusable, match="could not be rebuilt"):
            run_ingest(sources, db)
        (status, error), = _runs(db)[1:]
        assert status == "failed" and "could not be rebuilt" in error and f"{obstacle}'" in error
        assert query(db, "SELECT count(*) FROM articles") == [(3,)]  # the loads stand; only the index is behind

        obstacle.unlink()
        healed = run_ingest(sources, db)
    assert healed["articles_new"] == 0
    assert [status for status, _ in _runs(db)] == ["completed", "failed", "completed"]
    _assert_search_finds_every_article(db)
