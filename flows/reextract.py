"""`newsdesk reextract`: rebuild article bodies and page metadata from the raw
WARC archive with the current extractor, offline, updating rows in place
where the result changed (the previous version goes to article_revisions)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from flows import search_index
from flows.archive import read_at, resolve
from flows.extraction import ExtractJob, extract_one
from flows.fetch import Response
from flows.settings import Settings
from transforms.records import Article, FeedEntry
from warehouse import article_rows
from warehouse.connection import connect

# What extraction decides; identity, feed, first sighting and story are kept.
COMPARED = ("title", "author", "published_at", "date_source", "date_note", "language", "body", "body_source",
            "body_note", "word_count", "content_hash", "extractor")


@dataclass
class ReextractReport:
    articles: int = 0
    changed: list[tuple[str, str | None, list[str]]] = field(default_factory=list)  # (id, title, fields)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (id, why the new result was not used)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (id, archive problem)


def reextract(db: Path | str, settings: Settings, since: date | None = None,
              source: str | None = None) -> ReextractReport:
    # The archive's paths are relative to the warehouse's folder; a lake's, to the working directory.
    root = Path(db).resolve().parent if isinstance(db, Path) else Path.cwd()
    dedupe = settings.stories.params()
    report = ReextractReport()
    with connect(db, read_only=True) as con:
        archived = article_rows.select_archived_articles(con, since, source)
        stored = article_rows.select_articles(con, [a.article_id for a in archived])
    updates: list[Article] = []
    for row in archived:
        report.articles += 1
        try:
            record = read_at(str(resolve(row.warc_file, root)), row.warc_offset)
        except (OSError, StopIteration, ValueError) as exc:
            report.missing.append((row.article_id, f"{row.warc_file}@{row.warc_offset}: {exc}"))
            continue
        response = Response(url=record.url, final_url=record.url, status=record.status, headers=record.headers,
                            body=record.body)
        # The entry as the feed gave it, as far as the row remembers it: the
        # stored title and author (the feed's, else the page's), the feed's
        # date, or the date string it gave that could not be read.
        entry = FeedEntry(source=row.source, link=record.url, canonical_link=row.url, guid=None, title=row.title,
                          author=row.author, published_at=row.published_at if row.date_source == "feed" else None,
                          feed_text="", language=row.source_language, published_raw=row.published_raw)
        job = ExtractJob(entry, response.body, response.content_type, response.charset, response.final_url, None)
        article, problem = extract_one(job, row.run_id, row.first_seen_at, dedupe)
        if article is None or article.body_source != "page":
            # extract_one gives an article or the problem that prevented it, never neither.
            note = article.body_note if article is not None else None
            report.kept.append((row.article_id, problem.reason if problem else (note or "no page text")))
            continue
        old = stored[row.article_id]
        article = replace(article, article_id=row.article_id, url=row.url, first_seen_at=old["first_seen_at"],
                          run_id=old["run_id"])
        fields = [name for name in COMPARED if getattr(article, name) != old[name]]
        if fields:
            report.changed.append((row.article_id, article.title, fields))
            updates.append(article)
    if updates:
        with connect(db) as con:
            article_rows.apply_reextraction(con, updates)
            search_index.update(con, db)
    return report
