"""Loads into a lake: what `warehouse.article_rows`, `feed_registry` and
`story_rows` do in one file transaction,
as one unit of `warehouse.twophase` (keyed state in PostgreSQL, the bulk in
the lake).

Uniqueness comes from PostgreSQL: a new article first claims its canonical
URL (and, for a page body, its content hash) in `article_keys` with
INSERT ... ON CONFLICT DO NOTHING. A claim another writer won first
raises `ClaimLost`, the unit rolls back whole, and the caller resolves the
batch again against what is now known (the article becomes a duplicate).
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Sequence, cast

import duckdb
import pyarrow as pa

from transforms.records import (
    Article,
    BatchRows,
    Fingerprint,
    PollRows,
    Sighting,
)
from warehouse import twophase
from warehouse.arrow_rows import (
    ARTICLE_SCHEMA,
    FAILURE_SCHEMA,
    SIGHTING_SCHEMA,
    attempts_arrow,
    bands_arrow,
    feed_polls_arrow,
    fingerprints_arrow,
    insert_rows,
    outbox_arrow,
    stories_arrow,
    to_arrow,
)
from warehouse.lake import KEYED_SCHEMA
from warehouse.lookups import lookup
from warehouse.outbox import ATTEMPT_UPSERT, delete_keys
from warehouse.scopes import registered

KEYS = f"keys.{KEYED_SCHEMA}"


class ClaimLost(twophase.WriteConflict):
    """Another writer stored one of these articles first (same canonical URL
    or page hash): the batch is resolved again and loads it as a duplicate."""

    def __init__(self, urls: Sequence[str]):
        super().__init__(f"{len(urls)} article(s) were stored by another writer first: {', '.join(urls[:3])}")
        self.urls = list(urls)


_CLAIM_COLUMNS = ("kind", "key", "article_id", "body_source", "claimed_by")


def _claims(articles: Sequence[Article], unit: str) -> pa.Table:
    rows = [("url", a.url, a.article_id, a.body_source, unit) for a in articles]
    rows += [("hash", a.content_hash, a.article_id, "page", unit) for a in articles if a.body_source == "page"]
    return pa.table({name: [r[i] for r in rows] for i, name in enumerate(_CLAIM_COLUMNS)},
                    schema=pa.schema([(n, pa.string()) for n in _CLAIM_COLUMNS]))


def _insert_claims(con: duckdb.DuckDBPyConnection, claims: pa.Table, where: str = "") -> None:
    columns = ", ".join(_CLAIM_COLUMNS)
    with registered(con, "_claims", claims):
        con.execute(f"INSERT INTO {KEYS}.article_keys ({columns}) SELECT {columns} FROM _claims {where} "
                    "ON CONFLICT DO NOTHING")


def _claim(con: duckdb.DuckDBPyConnection, articles: Sequence[Article], unit: str) -> None:
    """Claim the keys of new articles for this unit of work; raise ClaimLost
    if another unit holds any (article ids are equal across writers: the
    claimant tells them apart). Two articles of one batch never share a key
    (resolve_duplicates)."""
    if not articles:
        return
    claims = _claims(articles, unit)
    _insert_claims(con, claims)
    keys = cast(list[str], claims["key"].to_pylist())  # urls and page hashes: never null
    owners = {(kind, key): by for kind, key, by in lookup(
        con, f"SELECT kind, key, claimed_by FROM {KEYS}.article_keys", "key", keys)}
    lost = sorted({key for kind, key in zip(claims["kind"].to_pylist(), keys) if owners.get((kind, key)) != unit})
    if lost:
        raise ClaimLost(lost)


def _sightings(con: duckdb.DuckDBPyConnection, sightings: Sequence[Sighting]) -> None:

    if not sightings:
        return
    first: dict[tuple[str, str], Sighting] = {}
    for s in sightings:
        first.setdefault((s.source, s.canonical_link), s)
    rows = to_arrow(list(first.values()), SIGHTING_SCHEMA)
    columns = ", ".join(f'"{n}"' for n in rows.schema.names)
    with registered(con, "_sightings", rows):
        # Another writer may sight the same (feed, link) at the same time.
        con.execute(f"INSERT INTO {KEYS}.article_sightings ({columns}) SELECT {columns} FROM _sightings "
                    "ON CONFLICT DO NOTHING")


def _roots(con: duckdb.DuckDBPyConnection, roots: Sequence[tuple[str, Fingerprint, datetime]],
           replace: bool) -> None:
    """Band keys and fingerprints of story roots, where new articles look
    their candidates up (the file reads them from its own tables)."""
    if not roots:
        return
    ids = [a for a, _, _ in roots]
    if replace:
        con.execute(f"DELETE FROM {KEYS}.story_bands WHERE story_id IN ({', '.join('?' * len(ids))})", ids)
        con.execute(f"DELETE FROM {KEYS}.story_roots WHERE story_id IN ({', '.join('?' * len(ids))})", ids)
    bands = bands_arrow(roots)
    prints = pa.table({
        "story_id": ids, "first_seen_at": [t for _, _, t in roots], "scheme": [f.scheme for _, f, _ in roots],
        "shingles": [f.shingles for _, f, _ in roots], "signature": [f.signature for _, f, _ in roots],
    })
    with registered(con, "_bands", bands), registered(con, "_prints", prints):
        con.execute(f"INSERT INTO {KEYS}.story_bands (band_key, story_id, first_seen_at) "
                    "SELECT band_key, story_id, first_seen_at FROM _bands")
        con.execute(f"INSERT INTO {KEYS}.story_roots (story_id, first_seen_at, scheme, shingles, signature) "
                    "SELECT story_id, first_seen_at, scheme, shingles, signature FROM _prints ON CONFLICT DO NOTHING")


def _stored_roots(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> dict[str, datetime]:
    return dict(lookup(con, f"SELECT story_id, first_seen_at FROM {KEYS}.story_roots", "story_id", ids))


def load_batch(con: duckdb.DuckDBPyConnection, batch: BatchRows, *, run_id: str,
               before_commit: Callable[[], None] | None, between_commits: Callable[[], None] | None) -> None:
    articles, upgrades = batch.articles, batch.upgrades
    upgraded: list[Article] = []
    unit = twophase.new_unit()

    def keyed() -> None:
        _claim(con, articles, unit)
        _sightings(con, batch.sightings)
        insert_rows(con, f"{KEYS}.page_attempts", attempts_arrow(batch.attempts), ATTEMPT_UPSERT)
        _roots(con, [(a.article_id, a.fingerprint, a.first_seen_at) for a in articles
                     if a.fingerprint and a.story_id == a.article_id], replace=False)
        # Upgrades: only a feed-text body is replaced, as in the file.
        if upgrades:
            feed_bodied = {article_id for article_id, source, kind in lookup(
                con, f"SELECT article_id, body_source, kind FROM {KEYS}.article_keys",
                "article_id", [a.article_id for a in upgrades]) if kind == "url" and source == "feed"}
            upgraded.extend(a for a in upgrades if a.article_id in feed_bodied)
            ids = [a.article_id for a in upgraded]
            if ids:
                con.execute(f"UPDATE {KEYS}.article_keys SET body_source = 'page' WHERE kind = 'url' "
                            f"AND article_id IN ({', '.join('?' * len(ids))})", ids)
                # The page body's hash, unless another article has it already.
                _insert_claims(con, _claims(upgraded, unit), "WHERE kind = 'hash'")
                roots = _stored_roots(con, ids)
                _roots(con, [(a.article_id, a.fingerprint, roots[a.article_id]) for a in upgraded
                             if a.fingerprint and a.article_id in roots], replace=True)
        delete_keys(con, f"{KEYS}.page_attempts", batch.settled)
        delete_keys(con, f"{KEYS}.entry_outbox", batch.dequeued)

    def parts() -> dict[str, pa.Table]:
        return {
            "articles": to_arrow(articles, ARTICLE_SCHEMA),
            "failures": to_arrow(batch.failures, FAILURE_SCHEMA),
            "upgrades": to_arrow(upgraded, ARTICLE_SCHEMA),
            "fingerprints": fingerprints_arrow([(a.article_id, a.fingerprint) for a in [*articles, *upgraded]
                                           if a.fingerprint]),
        }

    twophase.commit_unit(con, kind="batch", run_id=run_id, keyed=keyed, parts=parts, load_id=unit,
                         before_keyed_commit=before_commit, between_commits=between_commits)


def record_polls(con: duckdb.DuckDBPyConnection, rows: PollRows, *, run_id: str, at: datetime) -> None:
    from warehouse.feed_registry import update_source_states

    def keyed() -> None:
        update_source_states(con, rows.states)
        insert_rows(con, f"{KEYS}.entry_outbox", outbox_arrow(rows.queued, run_id, at), "ON CONFLICT DO NOTHING")
        _sightings(con, rows.sightings)

    twophase.commit_unit(con, kind="polls", run_id=run_id, keyed=keyed,
                         parts=lambda: {"feed_polls": feed_polls_arrow(rows.polls),
                                        "failures": to_arrow(rows.failures, FAILURE_SCHEMA)})


def save_stories(con: duckdb.DuckDBPyConnection, fingerprints: Sequence[tuple[str, Fingerprint]],
                 assignments: Sequence[tuple[str, str, str | None, float | None]]) -> None:
    """The backlog's stories and fingerprints (see warehouse.story_rows.save_stories)."""
    ids = [a for a, _ in fingerprints]
    first_seen = dict(lookup(con, "SELECT article_id, first_seen_at FROM lake.main.articles", "article_id", ids))
    new_roots = {a for a, story, _, _ in assignments if story == a}
    stored_roots = set(_stored_roots(con, ids))

    def keyed() -> None:
        _roots(con, [(a, f, first_seen[a]) for a, f in fingerprints if a in new_roots | stored_roots],
               replace=True)

    twophase.commit_unit(con, kind="stories", run_id="backlog", keyed=keyed,
                         parts=lambda: {"stories": stories_arrow(assignments),
                                        "fingerprints": fingerprints_arrow(fingerprints)})


def apply_reextraction(con: duckdb.DuckDBPyConnection, articles: Sequence[Article]) -> None:
    """See warehouse.article_rows.apply_reextraction: a new body's page hash is
    claimed (unless another article has it), a root's band keys replaced."""
    unit = twophase.new_unit()
    ids = [a.article_id for a in articles]

    def keyed() -> None:
        _insert_claims(con, _claims(articles, unit), "WHERE kind = 'hash'")
        roots = _stored_roots(con, ids)
        _roots(con, [(a.article_id, a.fingerprint, roots[a.article_id]) for a in articles
                     if a.fingerprint and a.article_id in roots], replace=True)

    twophase.commit_unit(con, kind="reextract", run_id="reextract", keyed=keyed, load_id=unit,
                         parts=lambda: {"reextract": to_arrow(articles, ARTICLE_SCHEMA),
                                        "fingerprints": fingerprints_arrow([(a.article_id, a.fingerprint)
                                                                       for a in articles if a.fingerprint])})
