"""Full-text search: DuckDB's `fts` extension over article titles and bodies.

The extension is loaded from the `duckdb-extension-fts` wheel pinned beside
duckdb, never downloaded: these machines may have no internet, and DuckDB's
autoloading is switched off in `connection.connect`. The index is a BM25
index (Porter stemmer, English stop words) rebuilt after a run that changed
articles; `search_articles(q)` is a table macro for plain SQL.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb


class ExtensionError(RuntimeError):
    """The fts extension that ships with the installed wheel does not fit this duckdb."""


def fts_extension_path() -> Path:
    import duckdb_extension_fts

    base = Path(duckdb_extension_fts.__file__).parent / "extensions"
    wanted = base / f"v{duckdb.__version__}" / "fts.duckdb_extension"
    if not wanted.exists():
        found = sorted(p.name for p in base.iterdir()) if base.exists() else []
        raise ExtensionError(
            f"duckdb {duckdb.__version__} needs the fts extension built for v{duckdb.__version__}, but the installed "
            f"duckdb-extension-fts has {', '.join(found) or 'none'}: pin duckdb and duckdb-extension-fts to the "
            "same version in pyproject.toml"
        )
    return wanted


def load_fts(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"LOAD '{fts_extension_path()}'")


_MACRO = """
CREATE OR REPLACE MACRO search_articles(q) AS TABLE
SELECT a.article_id, a.story_id, a.published_date, a.source, a.title, a.url, a.language, s.score
FROM (SELECT article_id, fts_main_articles.match_bm25(article_id, q) AS score FROM articles) s
JOIN articles a USING (article_id)
WHERE s.score IS NOT NULL
ORDER BY s.score DESC
"""


def refresh_index(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the BM25 index over title and body (and the SQL macro that uses it)."""
    con.execute("""PRAGMA create_fts_index('articles', 'article_id', 'title', 'body',
                   stemmer = 'porter', stopwords = 'english', strip_accents = 1, lower = 1, overwrite = 1)""")
    con.execute(_MACRO)


def has_index(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'fts_main_articles'").fetchone()[0])


def search(
    con: duckdb.DuckDBPyConnection,
    query: str,
    *,
    since: date | None = None,
    until: date | None = None,
    source: str | None = None,
    language: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """BM25-ranked matches, the best-ranked article of each story only, with
    how many of the story's articles matched."""
    rows = con.execute("""
        WITH hits AS (
            SELECT article_id, fts_main_articles.match_bm25(article_id, $q) AS score FROM articles
        ), matched AS (
            SELECT a.*, h.score,
                   row_number() OVER (PARTITION BY coalesce(a.story_id, a.article_id)
                                      ORDER BY h.score DESC, a.first_seen_at, a.article_id) AS rank_in_story,
                   count(*) OVER (PARTITION BY coalesce(a.story_id, a.article_id)) AS story_matches
            FROM hits h JOIN articles a USING (article_id)
            WHERE h.score IS NOT NULL
              AND ($since IS NULL OR a.published_date >= $since)
              AND ($until IS NULL OR a.published_date <= $until)
              AND ($source IS NULL OR a.source = $source)
              AND ($language IS NULL OR a.language = $language)
        )
        SELECT score, published_date, source, title, url, body, article_id, coalesce(story_id, article_id),
               story_matches
        FROM matched WHERE rank_in_story = 1
        ORDER BY score DESC, published_date DESC, article_id
        LIMIT $limit
    """, {"q": query, "since": since, "until": until, "source": source, "language": language,
          "limit": limit}).fetchall()
    names = ("score", "published_date", "source", "title", "url", "body", "article_id", "story_id", "story_matches")
    return [dict(zip(names, r)) for r in rows]
