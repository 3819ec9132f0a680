"""Loads: articles, sightings, failures, sources and runs.

Rows travel as Arrow tables, one transaction per batch, with
`INSERT ... ON CONFLICT DO NOTHING` so that loading a batch twice changes
nothing. No Python loop issues one INSERT per row.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence

import duckdb
import pyarrow as pa

from transforms.records import (
    Article,
    Failure,
    FeedEntry,
    FeedPoll,
    Fingerprint,
    PageAttempt,
    Sighting,
    SourceState,
)
from warehouse.queries import lookup
from warehouse.scopes import registered, transaction
from warehouse.search import queue_articles
from warehouse.twophase import alive, is_lake, keyed_dsn

_TS = pa.timestamp("us", tz="UTC")

ARTICLE_SCHEMA = pa.schema([
    ("article_id", pa.string()), ("url", pa.string()), ("source", pa.string()),
    ("title", pa.string()), ("author", pa.string()), ("published_at", _TS),
    ("published_date", pa.date32()), ("date_source", pa.string()), ("date_note", pa.string()),
    ("language", pa.string()), ("body", pa.string()), ("body_source", pa.string()),
    ("body_note", pa.string()), ("word_count", pa.int32()), ("content_hash", pa.string()),
    ("first_seen_at", _TS), ("run_id", pa.string()), ("extractor", pa.string()),
    ("story_id", pa.string()), ("duplicate_of", pa.string()), ("story_similarity", pa.float64()),
    ("warc_file", pa.string()), ("warc_offset", pa.int64()), ("published_raw", pa.string()),
])
SIGHTING_SCHEMA = pa.schema([
    ("article_id", pa.string()), ("source", pa.string()), ("url", pa.string()),
    ("canonical_link", pa.string()), ("guid", pa.string()), ("seen_at", _TS), ("run_id", pa.string()),
])
FAILURE_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("stage", pa.string()), ("url", pa.string()), ("source", pa.string()),
    ("reason", pa.string()), ("error", pa.string()), ("at", _TS), ("transient", pa.bool_()),
    ("outcome", pa.string()),
])


def to_arrow(records: Sequence[Any], schema: pa.Schema) -> pa.Table:
    """Columnar Arrow table of frozen dataclass records (field names = columns)."""
    names = schema.names
    columns = {name: [getattr(r, name) for r in records] for name in names}
    return pa.table(columns, schema=schema)


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, conflict: str,
            returning: str | None = None) -> set:
    """Insert the rows; with `returning`, the values of that column in the rows
    actually inserted (not those an ON CONFLICT DO NOTHING skipped)."""
    if rows.num_rows == 0:
        return set()
    columns = ", ".join(f'"{name}"' for name in rows.schema.names)
    with registered(con, "_batch", rows):
        result = con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _batch {conflict}"
                             + (f' RETURNING "{returning}"' if returning else ""))
        inserted = {r[0] for r in result.fetchall()} if returning else set()
        if table == "articles":  # the search index picks them up after the run
            queue_articles(con, "_batch")
    return inserted


ATTEMPT_SCHEMA = pa.schema([
    ("source", pa.string()), ("canonical_link", pa.string()), ("link", pa.string()), ("guid", pa.string()),
    ("title", pa.string()), ("author", pa.string()), ("published_at", _TS), ("feed_text", pa.string()),
    ("language", pa.string()), ("published_raw", pa.string()), ("article_id", pa.string()),
    ("status", pa.string()), ("attempts", pa.int32()),
    ("last_reason", pa.string()), ("last_error", pa.string()), ("first_failed_at", _TS),
    ("last_attempt_at", _TS), ("next_attempt_at", _TS),
])
_ENTRY_FIELDS = ("source", "canonical_link", "link", "guid", "title", "author", "published_at", "feed_text", "language",
                 "published_raw")


def _attempts_arrow(attempts: Sequence[PageAttempt]) -> pa.Table:
    columns = {name: [getattr(a.entry, name) for a in attempts] for name in _ENTRY_FIELDS}
    for name in ATTEMPT_SCHEMA.names[len(_ENTRY_FIELDS):]:
        columns[name] = [getattr(a, name) for a in attempts]
    return pa.table(columns, schema=ATTEMPT_SCHEMA)


def load_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    articles: Sequence[Article] = (),
    sightings: Sequence[Sighting] = (),
    failures: Sequence[Failure] = (),
    attempts: Sequence[PageAttempt] = (),
    upgrades: Sequence[Article] = (),
    settled: Sequence[tuple[str, str]] = (),
    dequeued: Sequence[tuple[str, str]] = (),
    before_commit: Callable[[], None] | None = None,
    run_id: str = "",
    between_commits: Callable[[], None] | None = None,
) -> None:
    """Load one batch in one transaction: all of it, or none of it.

    `attempts` are upserted into page_attempts; `upgrades` replace the body of
    feed-text articles whose page has now been fetched (same article_id);
    `settled` (source, canonical_link) pairs leave page_attempts, `dequeued`
    ones leave entry_outbox. `before_commit` runs last inside the transaction
    (the crash-injection tests kill the process there). On a lake the batch
    is one unit of `warehouse.twophase` for the run `run_id`, and
    `between_commits` runs between its PostgreSQL and its lake commit."""
    if is_lake(con):
        from warehouse import lakeload

        return lakeload.load_batch(con, articles=articles, sightings=sightings, failures=failures,
                                   attempts=attempts, upgrades=upgrades, settled=settled, dequeued=dequeued,
                                   run_id=run_id, before_commit=before_commit, between_commits=between_commits)
    with transaction(con):
        new = _insert(con, "articles", to_arrow(articles, ARTICLE_SCHEMA), "ON CONFLICT DO NOTHING", "article_id")
        _insert_sightings(con, sightings)
        _insert(con, "failures", to_arrow(failures, FAILURE_SCHEMA), "")
        _insert(con, "page_attempts", _attempts_arrow(attempts), """
            ON CONFLICT (source, canonical_link) DO UPDATE SET
                status = excluded.status, attempts = excluded.attempts, last_reason = excluded.last_reason,
                last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at,
                next_attempt_at = excluded.next_attempt_at,
                article_id = coalesce(excluded.article_id, page_attempts.article_id)""")
        _put_fingerprints(con, [(a.article_id, a.fingerprint) for a in articles if a.fingerprint])
        _put_bands(con, [(a.article_id, a.fingerprint, a.first_seen_at) for a in articles
                         if a.fingerprint and a.story_id == a.article_id and a.article_id in new], replace=False)
        _upgrade(con, upgrades)
        if settled:
            pairs = pa.table({"source": [s for s, _ in settled], "link": [c for _, c in settled]})
            with registered(con, "_settled", pairs):
                con.execute("DELETE FROM page_attempts p USING _settled s WHERE p.source = s.source AND p.canonical_link = s.link")
        _dequeue(con, dequeued)
        if before_commit is not None:
            before_commit()


def _dequeue(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]]) -> None:
    if not keys:
        return
    done = pa.table({"source": [s for s, _ in keys], "link": [c for _, c in keys]})
    with registered(con, "_done", done):
        con.execute("DELETE FROM entry_outbox o USING _done d WHERE o.source = d.source AND o.canonical_link = d.link")


OUTBOX_SCHEMA = pa.schema([
    ("source", pa.string()), ("canonical_link", pa.string()), ("link", pa.string()), ("guid", pa.string()),
    ("title", pa.string()), ("author", pa.string()), ("published_at", _TS), ("feed_text", pa.string()),
    ("language", pa.string()), ("published_raw", pa.string()), ("run_id", pa.string()), ("queued_at", _TS),
    ("position", pa.int32()),
])


def record_polls(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    at: datetime,
    states: Sequence[SourceState],
    polls: Sequence[FeedPoll],
    queued: Sequence[FeedEntry],
    sightings: Sequence[Sighting] = (),
    failures: Sequence[Failure] = (),
) -> None:
    """What a run's polls taught us, in one transaction: the feeds' new state
    (validators, backoff), the poll rows, sightings of articles already held,
    failures, and the new entries queued in entry_outbox. The validators are
    never stored without the entries they stand for."""
    if is_lake(con):
        from warehouse import lakeload

        return lakeload.record_polls(con, run_id=run_id, at=at, states=states, polls=polls, queued=queued,
                                     sightings=sightings, failures=failures)
    columns = {name: [getattr(e, name) for e in queued] for name in _ENTRY_FIELDS}
    columns.update(run_id=[run_id] * len(queued), queued_at=[at] * len(queued), position=list(range(len(queued))))
    with transaction(con):
        update_source_states(con, states)
        insert_feed_polls(con, polls)
        _insert(con, "entry_outbox", pa.table(columns, schema=OUTBOX_SCHEMA), "ON CONFLICT DO NOTHING")
        _insert_sightings(con, sightings)
        _insert(con, "failures", to_arrow(failures, FAILURE_SCHEMA), "")


def _insert_sightings(con: duckdb.DuckDBPyConnection, sightings: Sequence[Sighting]) -> None:
    """Store the sightings not stored yet: one per (source, canonical_link),
    the first. Stored ones are looked up by link (the sightings_link index)
    rather than left to ON CONFLICT: DuckDB 1.5 checks a conflict on a
    two-column key with a hash join over the whole table, every batch."""
    if not sightings:
        return
    stored = set(lookup(con, "SELECT source, canonical_link FROM article_sightings", "canonical_link",
                        [s.canonical_link for s in sightings]))
    fresh: dict[tuple[str, str], Sighting] = {}
    for s in sightings:
        if (s.source, s.canonical_link) not in stored:
            fresh.setdefault((s.source, s.canonical_link), s)
    _insert(con, "article_sightings", to_arrow(list(fresh.values()), SIGHTING_SCHEMA), "")


FINGERPRINT_SCHEMA = pa.schema([
    ("article_id", pa.string()), ("scheme", pa.string()), ("shingles", pa.int32()), ("signature", pa.binary()),
])
BAND_SCHEMA = pa.schema([("band_key", pa.int64()), ("story_id", pa.string()), ("first_seen_at", _TS)])


def _put_fingerprints(con: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[str, Fingerprint]]) -> None:
    rows = pa.table({
        "article_id": [a for a, _ in pairs], "scheme": [f.scheme for _, f in pairs],
        "shingles": [f.shingles for _, f in pairs], "signature": [f.signature for _, f in pairs],
    }, schema=FINGERPRINT_SCHEMA)
    _insert(con, "article_fingerprints", rows, """ON CONFLICT (article_id) DO UPDATE SET
        scheme = excluded.scheme, shingles = excluded.shingles, signature = excluded.signature""")


def _put_bands(con: duckdb.DuckDBPyConnection, roots: Sequence[tuple[str, Fingerprint, datetime]],
               replace: bool) -> None:
    """Add the band keys of these story roots (id, fingerprint, first seen);
    with `replace`, drop the keys they had first. New roots have none, and
    the DELETE would scan the whole table, so only re-fingerprints replace."""
    if not roots:
        return
    rows = pa.table({
        "band_key": [k for _, f, _ in roots for k in f.band_keys],
        "story_id": [a for a, f, _ in roots for _ in f.band_keys],
        "first_seen_at": [t for _, f, t in roots for _ in f.band_keys],
    }, schema=BAND_SCHEMA)
    if replace:
        _drop_bands(con, [(a, t) for a, _, t in roots])
    _insert(con, "story_bands", rows, "")


def _drop_bands(con: duckdb.DuckDBPyConnection, roots: Sequence[tuple[str, datetime]]) -> None:
    """Delete the band keys of these story roots (id, first seen).

    Story ids are random, so a filter on story_id alone reads every row
    group of story_bands. Each row carries its root's first sighting and rows
    are stored in that order: the time bound lets DuckDB skip all row groups
    but those of the roots' time on their min/max (an upgrade touches recent
    roots, a backlog chunk roots seen close together)."""
    if not roots:
        return
    times = [t for _, t in roots]
    with registered(con, "_roots", pa.table({"story_id": [a for a, _ in roots]})):
        con.execute("DELETE FROM story_bands WHERE first_seen_at BETWEEN ? AND ? "
                    "AND story_id IN (SELECT story_id FROM _roots)", [min(times), max(times)])


def _refingerprint(con: duckdb.DuckDBPyConnection, prints: Sequence[tuple[str, Fingerprint]]) -> None:
    """New fingerprints for stored articles; those that are story roots get
    their band keys replaced too (members have none)."""
    if not prints:
        return
    _put_fingerprints(con, prints)
    roots = {article_id: first_seen_at for article_id, first_seen_at, story_id in lookup(
        con, "SELECT article_id, first_seen_at, story_id FROM articles", "article_id", [a for a, _ in prints])
        if story_id == article_id}
    _put_bands(con, [(a, f, roots[a]) for a, f in prints if a in roots], replace=True)


def save_stories(
    con: duckdb.DuckDBPyConnection,
    fingerprints: Sequence[tuple[str, Fingerprint]],
    assignments: Sequence[tuple[str, str, str | None, float | None]],
) -> None:
    """For articles already loaded: store (new-scheme) fingerprints, give
    unclustered articles their story, and index the roots' band keys, in one
    transaction. `assignments` are (article_id, story_id, duplicate_of, similarity)."""
    if is_lake(con):
        from warehouse import lakeload

        return lakeload.save_stories(con, fingerprints, assignments)
    with transaction(con):
        if assignments:
            stories = pa.table({
                "article_id": [a[0] for a in assignments], "story_id": [a[1] for a in assignments],
                "duplicate_of": [a[2] for a in assignments], "similarity": [a[3] for a in assignments],
            }, schema=pa.schema([("article_id", pa.string()), ("story_id", pa.string()),
                                 ("duplicate_of", pa.string()), ("similarity", pa.float64())]))
            with registered(con, "_stories", stories):
                con.execute("""
                    UPDATE articles SET story_id = s.story_id, duplicate_of = s.duplicate_of,
                                        story_similarity = s.similarity
                    FROM _stories s WHERE articles.article_id = s.article_id AND articles.story_id IS NULL""")
                queue_articles(con, "_stories")  # the index keeps each article's story
        _refingerprint(con, fingerprints)  # after the stories: new roots get their band keys


def _upgrade(con: duckdb.DuckDBPyConnection, upgrades: Sequence[Article]) -> None:
    """The page body replaces the feed text; identity, first sighting, story
    and a feed date stay as they were. The new body's fingerprint replaces
    the old one (and a root's band keys with it)."""
    if not upgrades:
        return
    with registered(con, "_up", to_arrow(upgrades, ARTICLE_SCHEMA)):
        upgraded = {article_id for article_id, body_source in lookup(
            con, "SELECT article_id, body_source FROM articles", "article_id", [a.article_id for a in upgrades])
            if body_source == "feed"}
        # By key, with the ids as constants: a join with _up alone would read
        # the id column of every article (tests/warehouse/test_lookups.py).
        for ids in _chunks(sorted(upgraded)):
            _keep_revisions(con, "_up", "upgrade", ids)
            con.execute(f"""
                UPDATE articles SET
                    body = u.body, body_source = u.body_source, body_note = u.body_note,
                    word_count = u.word_count, content_hash = u.content_hash, language = u.language,
                    extractor = u.extractor, title = coalesce(articles.title, u.title),
                    warc_file = u.warc_file, warc_offset = u.warc_offset,
                    author = coalesce(articles.author, u.author),
                    published_at = CASE WHEN articles.date_source = 'first_seen' AND u.date_source = 'page'
                                        THEN u.published_at ELSE articles.published_at END,
                    published_date = CASE WHEN articles.date_source = 'first_seen' AND u.date_source = 'page'
                                          THEN u.published_date ELSE articles.published_date END,
                    date_source = CASE WHEN articles.date_source = 'first_seen' AND u.date_source = 'page'
                                       THEN 'page' ELSE articles.date_source END
                FROM _up AS u
                -- only a feed-text body is replaced (`upgraded`): a page body
                -- already stored stays. No other condition beside the id list:
                -- it would keep DuckDB from answering it with the index.
                WHERE articles.article_id = u.article_id AND articles.article_id IN ({_marks(ids)})
            """, ids)
        if upgraded:
            with registered(con, "_upgraded", pa.table({"article_id": sorted(upgraded)})):
                queue_articles(con, "_upgraded")
    _refingerprint(con, [(a.article_id, a.fingerprint) for a in upgrades if a.article_id in upgraded and a.fingerprint])


def _keep_revisions(con: duckdb.DuckDBPyConnection, changes: str, reason: str,
                    ids: Sequence[str] | None = None) -> None:
    """Copy the current version of the articles in the registered table
    `changes` whose body is about to change into article_revisions. With
    `ids` (a batch's worth), only those articles are read, by primary key."""
    # MATERIALIZED: inlined, the id list would be merged with the join's
    # conditions and DuckDB would scan the whole table instead of the index.
    stored = (f"(WITH k AS MATERIALIZED (SELECT * FROM articles WHERE article_id IN ({_marks(ids)})) "
              "SELECT * FROM k)") if ids is not None else "articles"
    con.execute(f"""
        INSERT INTO article_revisions (article_id, revised_at, reason, title, body, body_source, content_hash,
                                       extractor, published_at, language)
        SELECT a.article_id, now(), ?, a.title, a.body, a.body_source, a.content_hash, a.extractor,
               a.published_at, a.language
        FROM {stored} a JOIN {changes} c USING (article_id)
        WHERE a.content_hash <> c.content_hash
    """, [reason, *(ids or ())])


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Key lists of at most `size` (see `warehouse.queries.lookup`)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def apply_reextraction(con: duckdb.DuckDBPyConnection, articles: Sequence[Article]) -> None:
    """Replace what extraction decides (body, metadata from the page, language,
    fingerprint) of these stored articles, keeping each previous version whose
    body changed in article_revisions. Identity, URL, feed and story stay."""
    if not articles:
        return
    if is_lake(con):
        from warehouse import lakeload

        return lakeload.apply_reextraction(con, articles)
    with transaction(con):
        with registered(con, "_re", to_arrow(articles, ARTICLE_SCHEMA)):
            _keep_revisions(con, "_re", "reextract")
            con.execute("""
                UPDATE articles SET
                    title = r.title, author = r.author, published_at = r.published_at,
                    published_date = r.published_date, date_source = r.date_source, date_note = r.date_note,
                    language = r.language, body = r.body, body_source = r.body_source, body_note = r.body_note,
                    word_count = r.word_count, content_hash = r.content_hash, extractor = r.extractor
                FROM _re r WHERE articles.article_id = r.article_id
            """)
            queue_articles(con, "_re")
        _refingerprint(con, [(a.article_id, a.fingerprint) for a in articles if a.fingerprint])


FEED_POLL_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("source", pa.string()), ("fetched_at", _TS), ("status", pa.int32()),
    ("ok", pa.bool_()), ("not_modified", pa.bool_()), ("error", pa.string()), ("entries", pa.int32()),
    ("new_entries", pa.int32()), ("warning", pa.string()),
])


def feed_polls_arrow(polls: Sequence[FeedPoll]) -> pa.Table:
    return to_arrow(polls, FEED_POLL_SCHEMA)


def insert_feed_polls(con: duckdb.DuckDBPyConnection, polls: Sequence[FeedPoll]) -> None:
    if not polls:
        return
    _insert(con, "feed_polls", feed_polls_arrow(polls), "")


def upsert_sources(con: duckdb.DuckDBPyConnection, feeds: Iterable[dict]) -> None:
    """Register the feeds of the sources file; keeps each feed's fetch state."""
    rows = [
        {"name": f["name"], "url": f["url"], "language": f.get("language"), "tags": list(f.get("tags") or [])}
        for f in feeds
    ]
    if not rows:
        return
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("name", pa.string()), ("url", pa.string()), ("language", pa.string()), ("tags", pa.list_(pa.string())),
    ]))
    with registered(con, "_feeds", table):
        con.execute(
            # Every column given: through DuckDB a lake's PostgreSQL table gets NULL, not its default.
            "INSERT INTO sources (name, url, language, tags, consecutive_failures) "
            "SELECT name, url, language, tags, 0 FROM _feeds "
            "ON CONFLICT (name) DO UPDATE SET url = excluded.url, language = excluded.language, tags = excluded.tags"
        )


def update_source_states(con: duckdb.DuckDBPyConnection, states: Sequence[SourceState]) -> None:
    if not states:
        return
    table = pa.Table.from_pylist([dataclasses.asdict(s) for s in states], schema=pa.schema([
        ("name", pa.string()), ("fetched_at", _TS), ("status", pa.int32()), ("ok", pa.bool_()),
        ("error", pa.string()), ("etag", pa.string()), ("last_modified", pa.string()), ("title", pa.string()),
        ("next_attempt_at", _TS), ("warning", pa.string()),
    ]))
    with registered(con, "_states", table):
        # A 304 carries no validators of its own: keep the ones we had.
        con.execute("""
            UPDATE sources SET
                last_fetched_at = s.fetched_at,
                last_status = s.status,
                last_success_at = CASE WHEN s.ok THEN s.fetched_at ELSE sources.last_success_at END,
                last_error = CASE WHEN s.ok THEN NULL ELSE s.error END,
                -- a 304 re-reads nothing: the warning of the document we have stays
                last_warning = CASE WHEN s.ok AND s.status <> 304 THEN s.warning ELSE sources.last_warning END,
                consecutive_failures = CASE WHEN s.ok THEN 0 ELSE sources.consecutive_failures + 1 END,
                etag = CASE WHEN s.ok THEN coalesce(s.etag, sources.etag) ELSE sources.etag END,
                last_modified = CASE WHEN s.ok THEN coalesce(s.last_modified, sources.last_modified)
                                     ELSE sources.last_modified END,
                title = coalesce(s.title, sources.title),
                next_attempt_at = s.next_attempt_at
            FROM _states AS s
            WHERE sources.name = s.name
        """)


def start_run(con: duckdb.DuckDBPyConnection, run_id: str, started_at: datetime, flow_run_id: str | None) -> None:
    con.execute(
        "INSERT INTO runs (run_id, flow_run_id, started_at, status) VALUES (?, ?, ?, ?)",
        [run_id, flow_run_id, started_at, "running"],
    )


RUN_COUNTS = (
    "feeds_total", "feeds_ok", "feeds_not_modified", "feeds_failed", "entries_seen",
    "entries_known", "articles_new", "articles_from_feed", "duplicates", "entries_failed",
    "pages_fetched", "failures", "feeds_skipped", "entries_pending", "retries", "retries_loaded",
    "near_duplicates", "fetch_s", "parse_s", "extract_s", "dedupe_s", "load_s",
)


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    finished_at: datetime,
    status: str,
    counts: dict[str, int],
    error: str | None = None,
) -> None:
    sets = ", ".join(f"{name} = ?" for name in RUN_COUNTS)
    con.execute(
        f"UPDATE runs SET finished_at = ?, status = ?, error = ?, {sets} WHERE run_id = ?",
        [finished_at, status, error, *(counts.get(name, 0) for name in RUN_COUNTS), run_id],
    )


def abandon_dead_runs(con: duckdb.DuckDBPyConnection, live_run_id: str, at: datetime) -> list[str]:
    """Mark every other run still 'running' as 'abandoned'. Called by a run
    that holds the warehouse's ingest lock: no other run can be alive, so one
    still 'running' died without finishing (killed, out of power). Counts it
    had recorded stay; those it had not are taken from the rows it left
    (articles, sightings, failures, feed polls); the entry counts stay NULL,
    so run_accounting shows its balance as unknown, not as true."""
    dead = [r[0] for r in con.execute(
        "SELECT run_id FROM runs WHERE status = 'running' AND run_id <> ?", [live_run_id]).fetchall()]
    if dead and is_lake(con):  # writers share a lake: a run is dead when its lock is free
        live = alive(keyed_dsn(con), dead)
        dead = [r for r in dead if r not in live]
    if not dead:
        return []
    with transaction(con):
        con.execute("""
            UPDATE runs SET
                status = 'abandoned',
                finished_at = coalesce(runs.finished_at, ?),
                error = coalesce(runs.error, 'abandoned: its process ended before the run finished'),
                feeds_total = coalesce(runs.feeds_total, (SELECT count(*) FROM feed_polls p WHERE p.run_id = runs.run_id)),
                feeds_ok = coalesce(runs.feeds_ok, (SELECT count(*) FILTER (WHERE p.ok) FROM feed_polls p
                                                    WHERE p.run_id = runs.run_id)),
                feeds_not_modified = coalesce(runs.feeds_not_modified, (
                    SELECT count(*) FILTER (WHERE p.not_modified) FROM feed_polls p WHERE p.run_id = runs.run_id)),
                feeds_failed = coalesce(runs.feeds_failed, (SELECT count(*) FILTER (WHERE NOT p.ok) FROM feed_polls p
                                                            WHERE p.run_id = runs.run_id)),
                articles_new = coalesce(runs.articles_new, (SELECT count(*) FROM articles a WHERE a.run_id = runs.run_id)),
                articles_from_feed = coalesce(runs.articles_from_feed, (
                    SELECT count(*) FILTER (WHERE a.body_source = 'feed') FROM articles a WHERE a.run_id = runs.run_id)),
                failures = coalesce(runs.failures, (SELECT count(*) FROM failures f WHERE f.run_id = runs.run_id))
            WHERE status = 'running' AND run_id IN (SELECT unnest(?::VARCHAR[]))
        """, [at, dead])
    return dead
