"""Story state: each article's fingerprint under the current scheme, the
LSH band keys of story roots, and the reads that match new articles
against them (the candidate roots, the backlog of unfingerprinted articles).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, Sequence

import duckdb
import pyarrow as pa

from transforms.records import Fingerprint, StoryRoot
from warehouse.arrow_rows import bands_arrow, fingerprints_arrow, insert_rows, stories_arrow
from warehouse.lookups import lookup
from warehouse.rows import named_rows, one_row
from warehouse.scopes import registered, transaction
from warehouse.search import queue_articles
from warehouse.twophase import is_lake


def put_fingerprints(con: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[str, Fingerprint]]) -> None:
    insert_rows(con, "article_fingerprints", fingerprints_arrow(pairs), """ON CONFLICT (article_id) DO UPDATE SET
        scheme = excluded.scheme, shingles = excluded.shingles, signature = excluded.signature""")


def put_bands(con: duckdb.DuckDBPyConnection, roots: Sequence[tuple[str, Fingerprint, datetime]],
               replace: bool) -> None:
    """Add the band keys of these story roots (id, fingerprint, first seen);
    with `replace`, drop the keys they had first. New roots have none, and
    the DELETE would scan the whole table, so only re-fingerprints replace."""
    if not roots:
        return
    if replace:
        _drop_bands(con, [(a, t) for a, _, t in roots])
    insert_rows(con, "story_bands", bands_arrow(roots), "")


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


def refingerprint(con: duckdb.DuckDBPyConnection, prints: Sequence[tuple[str, Fingerprint]]) -> None:
    """New fingerprints for stored articles; those that are story roots get
    their band keys replaced too (members have none)."""
    if not prints:
        return
    put_fingerprints(con, prints)
    roots = {article_id: first_seen_at for article_id, first_seen_at, story_id in lookup(
        con, "SELECT article_id, first_seen_at, story_id FROM articles", "article_id", [a for a, _ in prints])
        if story_id == article_id}
    put_bands(con, [(a, f, roots[a]) for a, f in prints if a in roots], replace=True)


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
            with registered(con, "_stories", stories_arrow(assignments)):
                con.execute("""
                    UPDATE articles SET story_id = s.story_id, duplicate_of = s.duplicate_of,
                                        story_similarity = s.similarity
                    FROM _stories s WHERE articles.article_id = s.article_id AND articles.story_id IS NULL""")
                queue_articles(con, "_stories")  # the index keeps each article's story
        refingerprint(con, fingerprints)  # after the stories: new roots get their band keys


def select_story_roots(
    con: duckdb.DuckDBPyConnection, band_keys: Sequence[int], scheme: str,
    first_seen: tuple[datetime, datetime] | None,
) -> dict[int, list[StoryRoot]]:
    """Stored story roots sharing any of these band keys, by key, first seen
    within `first_seen` (from, to) when given. One hash join against
    story_bands; nothing of the history is held in memory.

    Runs append band keys in first-seen order, so the window's filter skips
    every older row group of story_bands on its min/max alone: the join
    reads the window's rows, not the history's."""
    if not band_keys:
        return {}
    if is_lake(con):
        return _lake_story_roots(con, band_keys, scheme, first_seen)
    window = "AND b.first_seen_at BETWEEN ? AND ?" if first_seen else ""
    with registered(con, "_bands", pa.table({"band_key": pa.array(sorted(set(band_keys)), pa.int64())})):
        rows = con.execute(f"""
            SELECT b.band_key, b.story_id, b.first_seen_at, f.shingles, f.signature
            FROM story_bands b
            JOIN _bands k ON k.band_key = b.band_key
            JOIN article_fingerprints f ON f.article_id = b.story_id AND f.scheme = ?
            WHERE true {window}
        """, [scheme, *(first_seen or ())]).fetchall()
    roots: dict[str, StoryRoot] = {}
    out: dict[int, list[StoryRoot]] = {}
    for key, story_id, first_seen_at, shingles, signature in rows:
        root = roots.get(story_id)
        if root is None:
            root = roots[story_id] = StoryRoot(story_id, Fingerprint(scheme, shingles, bytes(signature), ()),
                                               first_seen_at)
        out.setdefault(key, []).append(root)
    return out


def _lake_story_roots(con: duckdb.DuckDBPyConnection, band_keys: Sequence[int], scheme: str,
                      first_seen: tuple[datetime, datetime] | None) -> dict[int, list[StoryRoot]]:
    """The same on a lake: band keys and the roots' fingerprints are keyed
    tables in PostgreSQL, read key by key through their indexes."""
    bands = lookup(con, "SELECT band_key, story_id, first_seen_at FROM keys.newsdesk.story_bands", "band_key",
                   sorted(set(band_keys)))
    if first_seen:
        bands = [b for b in bands if first_seen[0] <= b[2] <= first_seen[1]]
    prints = {story_id: (shingles, bytes(signature)) for story_id, shingles, signature, kind in lookup(
        con, "SELECT story_id, shingles, signature, scheme FROM keys.newsdesk.story_roots", "story_id",
        [b[1] for b in bands]) if kind == scheme}
    roots: dict[str, StoryRoot] = {}
    out: dict[int, list[StoryRoot]] = {}
    for key, story_id, first_seen_at in bands:
        if story_id not in prints:
            continue
        root = roots.get(story_id)
        if root is None:
            shingles, signature = prints[story_id]
            root = roots[story_id] = StoryRoot(story_id, Fingerprint(scheme, shingles, signature, ()), first_seen_at)
        out.setdefault(key, []).append(root)
    return out


class BacklogArticle(NamedTuple):
    article_id: str
    body: str
    story_id: str | None
    first_seen_at: datetime


def select_fingerprint_backlog(con: duckdb.DuckDBPyConnection, scheme: str, limit: int) -> list[BacklogArticle]:
    """Articles with no fingerprint under the current scheme (loaded before
    stories existed, or before the [stories] settings changed), first seen first."""
    # Every run asks; almost always there is none. Fingerprints are one per
    # article (article_id is their key) and articles are never deleted, so
    # equal counts mean no backlog, without an anti-join over the history.
    missing = one_row(con.execute("SELECT (SELECT count(*) FROM articles) "
                                  "- (SELECT count(*) FROM article_fingerprints WHERE scheme = ?)", [scheme]))[0]
    if missing <= 0:
        return []
    rows = named_rows(con.execute("""
        SELECT a.article_id, a.body, a.story_id, a.first_seen_at FROM articles a
        WHERE NOT EXISTS (SELECT 1 FROM article_fingerprints f WHERE f.article_id = a.article_id AND f.scheme = ?)
        ORDER BY a.first_seen_at, a.article_id LIMIT ?
    """, [scheme, limit]))
    return [BacklogArticle(**r) for r in rows]
