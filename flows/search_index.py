"""The full-text search index: tantivy (BM25) in a directory beside the
DuckDB file, `<db>.search/`, keyed by article_id (for a lake: one per
machine, which follows the lake's change feed from the snapshot it indexed).

It lives in flows because it is file I/O of its own: it never talks to
DuckDB (the rows come from and go back through `warehouse.search`). A run
indexes only what its loads queued (`update`), replacing earlier versions of
the same articles; `rebuild` (the `newsdesk reindex` command) indexes every
article into a fresh directory and swaps it in; a run rebuilds too when it
finds the index missing, of another build, or unreadable (damaged files).
Each language has its own fields and analyzer (Snowball stemmer and stop
words of the detected `language`); a query is analysed by every language's
analyzer, or by one.

Readers never wait on DuckDB's lock for the index itself, and tantivy lets
them read while a writer commits; only the story ranking and the article
rows come from DuckDB.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import tantivy

from flows.locks import exclusive
from transforms.errors import NewsdeskError, NoWarehouse
from transforms.languages import (
    OTHER,
    STEMMERS,
    STOPWORDS,
    analyzer_key,
    analyzer_keys,
    plain_query,
)
from transforms.ranking import Hit, best_of_each_story
from warehouse import search as store
from warehouse.connection import Connection
from warehouse.target import is_lake

log = logging.getLogger("newsdesk.search")

ID_FILE = "newsdesk-index-id"  # which build this directory is; the warehouse keeps the same id
# Bump when the fields or analyzers change: a build of another format is rebuilt.
INDEX_FORMAT = "v1"
HITS = 1_000  # hits for SQL (`newsdesk sql --search`)
# Hits a search ranks into stories, per result asked for: fewer hits let the
# index skip more of the long posting lists (block-max WAND).
HITS_PER_RESULT, MIN_HITS = 5, 100
_EPOCH = date(1970, 1, 1)


class IndexMissing(NoWarehouse):
    """There is no search index beside this warehouse yet."""


class IndexUnusable(NewsdeskError):
    """The index directory is there, but tantivy cannot read it (damaged or
    missing files) or could not write it."""

    def __init__(self, path: Path, message: str):
        self.path = path
        super().__init__(f"search index at {path} {message}")


def index_dir(db: str | os.PathLike) -> Path:
    """`<db>.search/` beside a file warehouse. A lake has no file to sit
    beside, and each machine keeps its own index of it: under
    $NEWSDESK_SEARCH_DIR (default ~/.local/share/newsdesk/search), named by
    a digest of the lake's ATTACH string."""
    if is_lake(db):
        root = Path(os.environ.get("NEWSDESK_SEARCH_DIR") or Path.home() / ".local" / "share" / "newsdesk" / "search")
        return root / f"lake-{hashlib.sha256(str(db).encode()).hexdigest()[:16]}.search"
    return Path(str(db) + ".search")


# On a lake, the snapshot the index has indexed up to (its watermark), kept
# in the index directory: written after each commit, so a crash in between
# only indexes the same changes again (each replaces itself).
WATERMARK_FILE = "newsdesk-lake-snapshot"


def _watermark(path: Path) -> int | None:
    try:
        return int((path / WATERMARK_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _set_watermark(path: Path, snapshot: int) -> None:
    part = path / (WATERMARK_FILE + ".part")
    part.write_text(str(snapshot), encoding="utf-8")
    part.replace(path / WATERMARK_FILE)


def _schema() -> tuple[tantivy.Schema, tuple[str, ...]]:
    """The schema, and its text fields (for `unreadable`'s probe)."""
    b = tantivy.SchemaBuilder()
    text: list[str] = []

    def add_text(name: str, **options) -> None:
        text.append(name)
        b.add_text_field(name, **options)

    add_text("article_id", stored=True, tokenizer_name="raw")
    add_text("language", tokenizer_name="raw")
    add_text("source", tokenizer_name="raw")
    b.add_integer_field("day", stored=True, indexed=True, fast=True)  # published_date, days since 1970-01-01
    # Stored for ranking one row per story without a join in the warehouse.
    add_text("story_id", stored=True, tokenizer_name="raw")
    b.add_integer_field("first_seen", stored=True)  # microseconds since the epoch
    for key in analyzer_keys():
        add_text(f"title_{key}", tokenizer_name=f"news_{key}")
        add_text(f"body_{key}", tokenizer_name=f"news_{key}")
    return b.build(), tuple(text)


_SCHEMA, _TEXT_FIELDS = _schema()


def _analyzer(key: str) -> tantivy.TextAnalyzer:
    builder = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
               .filter(tantivy.Filter.remove_long(40)).filter(tantivy.Filter.lowercase()))
    if key != OTHER:
        name = STEMMERS[key]
        if name in STOPWORDS:
            builder = builder.filter(tantivy.Filter.stopword(name))
        builder = builder.filter(tantivy.Filter.stemmer(name))
    # Folded after stemming: the stemmers know their accents; queries fold alike.
    return builder.filter(tantivy.Filter.ascii_fold()).build()


def _open(path: Path) -> tantivy.Index:
    index = tantivy.Index(_SCHEMA, path=str(path), reuse=True)
    for key in analyzer_keys():
        index.register_tokenizer(f"news_{key}", _analyzer(key))
    return index


def _document(row: dict[str, Any]) -> tantivy.Document:
    key = analyzer_key(row["language"])
    doc = tantivy.Document()
    doc.add_text("article_id", row["article_id"])
    doc.add_text("language", row["language"] or "")
    doc.add_text("source", row["source"])
    doc.add_integer("day", (row["published_date"] - _EPOCH).days)
    doc.add_text("story_id", row["story_id"] or row["article_id"])
    doc.add_integer("first_seen", int(row["first_seen_at"].timestamp() * 1_000_000))
    if row["title"]:
        doc.add_text(f"title_{key}", row["title"])
    doc.add_text(f"body_{key}", row["body"])
    return doc


def _build_id(path: Path) -> str | None:
    try:
        return (path / ID_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def in_sync(con: Connection, db: str | os.PathLike) -> bool:
    """Whether the index directory is the build this warehouse was synced with."""
    path = index_dir(db)
    built = _build_id(path)
    if built is None or not built.startswith(INDEX_FORMAT + "-"):
        return False
    if is_lake(db):  # each machine's own index: its build id and watermark are in the directory
        return _watermark(path) is not None
    return built == store.select_index_id(con)


def unreadable(path: Path) -> str | None:
    """What keeps tantivy from reading the index at `path`, or None. Cheap (a
    millisecond): opening the index reads meta.json and opens every segment's
    files (a missing or truncated one fails its footer check); one lookup of
    a term no field holds, in every text field, opens each segment's term
    dictionaries and posting and position files, which an open alone does
    not. Bits flipped inside a file are not found: that would need reading
    the whole index (tantivy's checksums)."""
    if not (path / "meta.json").is_file():
        # Without it tantivy would quietly start a new, empty index here.
        return "meta.json is missing"
    try:
        searcher = _open(path).searcher()
        probe = tantivy.Query.boolean_query([
            (tantivy.Occur.Should, tantivy.Query.term_query(_SCHEMA, name, "\x00")) for name in _TEXT_FIELDS])
        searcher.search(probe, limit=1, count=False)
    except ValueError as exc:  # tantivy's errors: "Data corrupted ...", "Failed to open file for read ..."
        return str(exc)
    return None


@dataclass(frozen=True)
class IndexUpdate:
    articles: int  # indexed (added or replaced)
    rebuilt: bool
    seconds: float
    damage: str | None = None  # why the index it replaced could not be read, when it was rebuilt for that


# Two writers on one machine may update one lake's index at once (the file
# warehouse's ingest lock already keeps its writers apart): the second waits
# for the first, then finds the index in sync and adds only what is left.
# A rebuild of a million articles takes minutes.
INDEX_LOCK_WAIT_S = 1800.0


def _index_lock(path: Path):
    def busy(holder: str, waited: float) -> Exception:
        return IndexUnusable(path, f"is being written by another process ({holder}); waited {waited:.0f} s")

    return exclusive(path.with_name(path.name + ".lock"), INDEX_LOCK_WAIT_S, busy)


def update(con: Connection, db: str | os.PathLike) -> IndexUpdate:
    """`_update` while holding the index's lock."""
    with _index_lock(index_dir(db)):
        return _update(con, db)


def _update(con: Connection, db: str | os.PathLike) -> IndexUpdate:
    """Index what the loads queued since the last commit; the whole warehouse
    when the index is missing, from another build or unreadable (damaged).
    Called with the writer's connection at the end of a run (or of a
    re-extraction). An index that cannot be written now because another
    process holds its writer lock is logged and left: the queue keeps the
    articles for the next run. Any other failure to write it raises
    `IndexUnusable` (the run fails; the queue keeps the articles), and so
    does a rebuild that fails."""
    started = time.perf_counter()
    path = index_dir(db)
    if not in_sync(con, db):
        return _rebuild_in_run(con, db, None)
    damage = unreadable(path)
    if damage is not None:
        log.warning("search index at %s cannot be read (%s): rebuilding it from the warehouse", path, damage)
        return _rebuild_in_run(con, db, damage)
    if is_lake(db):
        upto = store.select_snapshot(con)
        since = _watermark(path)
        if since is None:  # gone since in_sync read it (a rebuild elsewhere): rebuild, as in_sync would have said
            return _rebuild_in_run(con, db, None)
        try:
            changed = store.select_changed(con, since, upto)
        except store.ChangesExpired as exc:
            log.warning("search index at %s is older than the lake keeps (%s): rebuilding it", path, exc)
            return _rebuild_in_run(con, db, None)
        queued = store.Queued(upto, changed)
    else:
        queued = store.select_queued(con)
    if not queued.articles:
        if is_lake(db) and queued.upto != _watermark(path):
            _set_watermark(path, queued.upto)  # other tables changed: nothing to index
        return IndexUpdate(0, False, time.perf_counter() - started)
    try:
        writer = _open(path).writer(heap_size=50_000_000, num_threads=1)
        for row in queued.articles:
            # A replaced version goes: delete first, the add comes after it in the same commit.
            writer.delete_documents_by_term("article_id", row["article_id"])
            writer.add_document(_document(row))
        writer.commit()
        writer.wait_merging_threads()
    except ValueError as exc:  # tantivy's errors
        if "LockBusy" not in str(exc):
            raise IndexUnusable(path, f"could not be updated ({exc}); {len(queued.articles)} articles stay "
                                      "queued, and the next run checks the index again") from exc
        log.warning("search index not updated, another process holds its writer lock "
                    "(%d articles stay queued for the next run): %s", len(queued.articles), exc)
        return IndexUpdate(0, False, time.perf_counter() - started)
    if is_lake(db):
        _set_watermark(path, queued.upto)
    else:
        store.clear_queue(con, queued.upto)
    return IndexUpdate(len(queued.articles), False, time.perf_counter() - started)


def _rebuild_in_run(con: Connection, db: str | os.PathLike, damage: str | None) -> IndexUpdate:
    """`rebuild` for `update`. It reads every article in one snapshot and
    clears the queue up to that snapshot: nothing is missing after it, and
    nothing is in it twice. A failure names the index and is raised: the old
    index stays as it was (missing, damaged) or no longer matches the id the
    warehouse holds, so the next run rebuilds again."""
    try:
        return replace(_rebuild(con, db), damage=damage)
    except (OSError, ValueError) as exc:
        raise IndexUnusable(index_dir(db), f"could not be rebuilt ({type(exc).__name__}: {exc}); "
                                           "the next run tries again") from exc


def rebuild(con: Connection, db: str | os.PathLike, threads: int = 2, heap_mb: int = 400) -> IndexUpdate:
    """`_rebuild` while holding the index's lock."""
    with _index_lock(index_dir(db)):
        return _rebuild(con, db, threads, heap_mb)


def _rebuild(con: Connection, db: str | os.PathLike, threads: int = 2, heap_mb: int = 400) -> IndexUpdate:
    """Index every article into a fresh directory, then swap it in. Searches
    keep using the old index until the swap."""
    started = time.perf_counter()
    path = index_dir(db)
    building = path.with_name(path.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    # A large heap per thread: fewer, bigger segments, so less merging afterwards.
    writer = _open(building).writer(heap_size=heap_mb * 1_000_000 * threads, num_threads=threads)
    upto, batches = (store.begin_lake_rebuild if is_lake(db) else store.begin_rebuild)(con)
    count = 0
    try:
        for batch in batches:
            for row in batch.to_pylist():
                writer.add_document(_document(row))
                count += 1
    finally:
        store.end_rebuild(con)
    writer.commit()
    writer.wait_merging_threads()
    index_id = f"{INDEX_FORMAT}-{uuid.uuid4().hex}"
    (building / ID_FILE).write_text(index_id, encoding="utf-8")
    if is_lake(db):
        _set_watermark(building, upto)
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    building.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    # A crash before this line leaves ids that differ: the next run rebuilds again.
    if not is_lake(db):
        store.finish_rebuild(con, index_id, upto, count, datetime.now(timezone.utc))
    return IndexUpdate(count, True, time.perf_counter() - started)


def _query(index: tantivy.Index, text: str, language: str | None, source: str | None,
           since: date | None, until: date | None) -> tantivy.Query | None:
    words = plain_query(text)
    if not words:
        return None
    keys = [analyzer_key(language)] if language else analyzer_keys()
    query = index.parse_query(words, [f"{part}_{key}" for key in keys for part in ("title", "body")])
    filters = []
    if language:
        filters.append(tantivy.Query.term_query(_SCHEMA, "language", language))
    if source:
        filters.append(tantivy.Query.term_query(_SCHEMA, "source", source))
    if since or until:
        filters.append(tantivy.Query.range_query(
            _SCHEMA, "day", tantivy.FieldType.Integer,
            (since - _EPOCH).days if since else None, (until - _EPOCH).days if until else None))
    if not filters:
        return query
    # Filters select, they do not score: BM25 of the words alone ranks.
    return tantivy.Query.boolean_query([(tantivy.Occur.Must, query)] + [
        (tantivy.Occur.Must, tantivy.Query.const_score_query(f, 0.0)) for f in filters])


def hits(db: str | os.PathLike, text: str, *, language: str | None = None, source: str | None = None,
         since: date | None = None, until: date | None = None, limit: int = HITS) -> list[Hit]:
    """The best matches, best first, with what ranking needs of each."""
    path = index_dir(db)
    built = _build_id(path)
    if built is None or not built.startswith(INDEX_FORMAT + "-"):
        raise IndexMissing(f"no search index of this newsdesk at {path}: run `newsdesk ingest` "
                           "(or `newsdesk reindex`) first")
    if not (path / "meta.json").is_file():  # else opening it would create an empty index here
        raise _unreadable_error(path, "meta.json is missing")
    try:
        index = _open(path)
        searcher = index.searcher()
    except ValueError as exc:  # damaged: meta.json, a segment file missing or truncated
        raise _unreadable_error(path, exc) from None
    query = _query(index, text, language, source, since, until)
    if query is None:
        return []
    out = []
    try:
        # Some damage shows only now: a segment's position file opens when a word is looked up.
        for score, address in searcher.search(query, limit=limit, count=False).hits:
            doc = searcher.doc(address)
            out.append(Hit(doc["article_id"][0], score, doc["story_id"][0], doc["day"][0], doc["first_seen"][0]))
    except ValueError as exc:
        raise _unreadable_error(path, exc) from None
    return out


def _unreadable_error(path: Path, problem: object) -> IndexUnusable:
    return IndexUnusable(path, f"cannot be read ({problem}): run `newsdesk reindex`, "
                               "or the next `newsdesk ingest` rebuilds it")


def hits_table(db: str | os.PathLike, text: str, **filters) -> dict[str, list]:
    """The hits as columns (article_id, score, rank), for joining into SQL."""
    found = hits(db, text, **filters)
    return {"article_id": [h.article_id for h in found], "score": [h.score for h in found],
            "rank": list(range(1, len(found) + 1))}


def search(con: Connection, db: str | os.PathLike, text: str, *, since: date | None = None,
           until: date | None = None, source: str | None = None, language: str | None = None,
           limit: int = 20) -> list[dict[str, Any]]:
    """BM25-ranked matches, the best-ranked article of each story only, with
    how many of the story's articles matched. `con` may be read-only."""
    found = hits(db, text, language=language, source=source, since=since, until=until,
                 limit=max(MIN_HITS, HITS_PER_RESULT * limit))
    ranked = best_of_each_story(found, limit)
    rows = store.select_hit_rows(con, [hit.article_id for hit, _ in ranked])
    return [{**rows[hit.article_id], "score": hit.score, "story_id": hit.story_id, "story_matches": matches}
            for hit, matches in ranked if hit.article_id in rows]


def indexed_ids(db: str | os.PathLike) -> list[str]:
    """Every article_id in the index, once per live document (for checks)."""
    index = _open(index_dir(db))
    searcher = index.searcher()
    found = searcher.search(tantivy.Query.all_query(), limit=max(searcher.num_docs, 1), count=False).hits
    return [searcher.doc(address)["article_id"][0] for _, address in found]


