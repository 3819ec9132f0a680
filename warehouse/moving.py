"""Moving a file warehouse into a lake (`newsdesk migrate --to`).

Two commits, because DuckDB writes one attached database per transaction:
first the keyed state (PostgreSQL), then the bulk (the lake) together with
a `lake_loads` row of kind 'migrate'. That row is the proof the move
finished: a move killed between the two commits left keyed rows and no
proof, and the next `migrate` replaces them and copies again; a finished
move is not repeated. A lake that already holds other data is refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from transforms.errors import InputError
from warehouse.lake import KEYED_SCHEMA, KEYED_TABLES, LAKE_TABLES
from warehouse.rows import one_row
from warehouse.schema import built_schema
from warehouse.scopes import transaction


class LakeNotEmpty(InputError):
    """The lake holds data that did not come from this move."""


@dataclass(frozen=True)
class Moved:
    tables: dict[str, int]       # rows per table, as copied
    articles: int
    checksum_file: str           # count and sum of md5(url|content_hash) over articles
    checksum_lake: str
    already: bool                # the lake held this move already: nothing copied

    @property
    def matches(self) -> bool:
        return self.checksum_file == self.checksum_lake


_CHECKSUM = ("SELECT count(*), coalesce(sum(md5_number_lower(url || '|' || content_hash)), 0) "
             "FROM {table}")


def _checksum(con: duckdb.DuckDBPyConnection, table: str) -> str:
    count, total = one_row(con.execute(_CHECKSUM.format(table=table)))
    return f"{count}:{int(total) % 2**64:016x}"


def _columns(table: str) -> str:
    return ", ".join(f'"{name}"' for name, *_ in built_schema().columns[table])


def move_into_lake(con: duckdb.DuckDBPyConnection, source: Path) -> Moved:
    """Copy the file warehouse at `source` into the lake attached to `con`
    (see `warehouse.lake.attach`); the file is only read."""
    literal = "'" + str(source).replace("'", "''") + "'"
    con.execute(f"ATTACH {literal} AS src (READ_ONLY)")
    try:
        return _move(con)
    finally:
        con.execute("USE lake")
        con.execute("DETACH src")
        con.execute(f"SET search_path = 'lake.main,keys.{KEYED_SCHEMA}'")


def _move(con: duckdb.DuckDBPyConnection) -> Moved:
    moved = con.execute("SELECT detail FROM lake.main.lake_loads WHERE kind = 'migrate'").fetchall()
    if moved:
        source = _checksum(con, "src.main.articles")
        if source not in {detail for detail, in moved}:
            raise LakeNotEmpty(f"the lake holds another warehouse's articles ({moved[0][0]}, this file's: {source}); "
                               "migrate moves a warehouse into an empty lake")
        return Moved({}, one_row(con.execute("SELECT count(*) FROM lake.main.articles"))[0],
                     source, _checksum(con, "lake.main.articles"), already=True)
    held = {t: one_row(con.execute(f"SELECT count(*) FROM lake.main.{t}"))[0] for t in LAKE_TABLES}
    if any(held.values()):
        busy = ", ".join(f"{t} ({n})" for t, n in held.items() if n)
        raise LakeNotEmpty(f"the lake holds data already ({busy}); migrate moves a warehouse into an empty lake")
    counts: dict[str, int] = {}
    # The keyed state first; any rows there now are a killed move's (the
    # lake is empty), replaced whole.
    with transaction(con):
        for table in (*KEYED_TABLES, "article_keys", "story_roots"):
            con.execute(f"DELETE FROM keys.{KEYED_SCHEMA}.{table}")
        for table in KEYED_TABLES:
            cols = _columns(table)
            con.execute(f"INSERT INTO keys.{KEYED_SCHEMA}.{table} ({cols}) SELECT {cols} FROM src.main.{table}")
            counts[table] = one_row(con.execute(f"SELECT count(*) FROM src.main.{table}"))[0]
        # What the file answers from its articles' indexes: an article by its
        # canonical URL or any entry link it was sighted under, by the hash
        # of a page body (the first article of that hash).
        con.execute(f"""
            INSERT INTO keys.{KEYED_SCHEMA}.article_keys (kind, key, article_id, body_source, claimed_by)
            SELECT 'url', url, article_id, body_source, 'migrate' FROM src.main.articles
            UNION ALL
            SELECT 'url', s.canonical_link, min(s.article_id), min(a.body_source), 'migrate'
            FROM src.main.article_sightings s JOIN src.main.articles a USING (article_id)
            WHERE s.canonical_link NOT IN (SELECT url FROM src.main.articles)
            GROUP BY s.canonical_link
            UNION ALL
            SELECT 'hash', content_hash, min(article_id), 'page', 'migrate' FROM src.main.articles
            WHERE body_source = 'page' GROUP BY content_hash
        """)
        con.execute(f"""
            INSERT INTO keys.{KEYED_SCHEMA}.story_roots (story_id, first_seen_at, scheme, shingles, signature)
            SELECT a.article_id, a.first_seen_at, f.scheme, f.shingles, f.signature
            FROM src.main.articles a JOIN src.main.article_fingerprints f USING (article_id)
            WHERE a.story_id = a.article_id
        """)
    with transaction(con):
        for table in LAKE_TABLES:
            cols = _columns(table)
            # In first-seen order where there is one: readers' time filters
            # then skip files on their min/max, as row groups in the file.
            order = {"articles": " ORDER BY first_seen_at, article_id", "runs": " ORDER BY started_at",
                     "feed_polls": " ORDER BY fetched_at", "failures": ' ORDER BY "at"'}.get(table, "")
            con.execute(f"INSERT INTO lake.main.{table} ({cols}) SELECT {cols} FROM src.main.{table}{order}")
            counts[table] = one_row(con.execute(f"SELECT count(*) FROM src.main.{table}"))[0]
        con.execute("INSERT INTO lake.main.lake_loads (load_id, kind, \"at\", detail) VALUES (?, 'migrate', ?, ?)",
                    [uuid.uuid4().hex, datetime.now(timezone.utc), _checksum(con, "src.main.articles")])
    return Moved(counts, counts["articles"], _checksum(con, "src.main.articles"),
                 _checksum(con, "lake.main.articles"), already=False)
