"""Exact-duplicate decisions: which entries to fetch, which articles are new.

Two pure steps around the page fetch. Before it, `plan_entries` drops entries
a feed already showed us and folds entries that share a canonical link, so a
page is fetched once however many feeds carry it. After extraction,
`resolve_duplicates` matches articles on canonical URL and content hash
against the warehouse (`KnownKeys`) and the batch itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from transforms.records import Article, FeedEntry, KnownKeys, Sighting


@dataclass(frozen=True, slots=True)
class EntryPlan:
    # New entries grouped by canonical link; the first of each group is fetched.
    to_fetch: tuple[tuple[FeedEntry, ...], ...] = ()
    # Entries of an article the warehouse already holds, seen in a new feed.
    of_stored_articles: tuple[tuple[FeedEntry, str], ...] = ()
    # Entries this feed had already shown us (in an earlier run, or twice now).
    already_seen: tuple[FeedEntry, ...] = ()


def global_guid(guid: str | None) -> str | None:
    """A GUID that names the same item in any feed: a URL or a URI scheme
    built for uniqueness (tag:, urn:). Plain GUIDs like "1234" only mean
    something inside their own feed, so they never match across feeds."""
    if not guid:
        return None
    lowered = guid.lower()
    if lowered.startswith(("http://", "https://", "tag:", "urn:")):
        return guid
    return None


def plan_entries(entries: list[FeedEntry] | tuple[FeedEntry, ...], known: KnownKeys) -> EntryPlan:
    groups: dict[str, list[FeedEntry]] = {}
    group_of_guid: dict[str, str] = {}
    known_entries: list[tuple[FeedEntry, str]] = []
    seen: list[FeedEntry] = []
    taken: set[tuple[str, str]] = set()
    for entry in entries:
        key = (entry.source, entry.canonical_link)
        if key in known.sighted_links or key in taken or (
            entry.guid and (entry.source, entry.guid) in known.sighted_guids
        ):
            seen.append(entry)
            continue
        taken.add(key)
        guid = global_guid(entry.guid)
        article_id = known.by_url.get(entry.canonical_link) or (known.by_guid.get(guid) if guid else None)
        if article_id:
            known_entries.append((entry, article_id))
            continue
        # Same link, or same global GUID under another link: one page, one fetch.
        link = entry.canonical_link if entry.canonical_link in groups else group_of_guid.get(guid or "", entry.canonical_link)
        groups.setdefault(link, []).append(entry)
        if guid:
            group_of_guid.setdefault(guid, link)
    return EntryPlan(tuple(tuple(g) for g in groups.values()), tuple(known_entries), tuple(seen))


@dataclass(slots=True)
class Resolution:
    articles: list[Article] = field(default_factory=list)
    sightings: list[Sighting] = field(default_factory=list)
    duplicates: int = 0  # entries that turned out to be an article we hold


def sighting(entry: FeedEntry, article_id: str, *, run_id: str, now: datetime) -> Sighting:
    return Sighting(
        article_id=article_id,
        source=entry.source,
        url=entry.link or entry.canonical_link,  # an item without a link: its key
        canonical_link=entry.canonical_link,
        guid=entry.guid,
        seen_at=now,
        run_id=run_id,
    )


def resolve_duplicates(
    built: list[tuple[tuple[FeedEntry, ...], Article]],
    known: KnownKeys,
    *,
    run_id: str,
    now: datetime,
) -> Resolution:
    """Keep the first article per canonical URL and per content hash, across
    the warehouse and this batch; every entry becomes a sighting of the
    article it carried.

    Only page bodies are matched by content hash (`known.by_hash` must hold
    page bodies only). A feed-text fallback is matched by its URL alone:
    feeds give many different items the same teaser ("Read more…"), so equal
    feed text says nothing about being the same article, and merging them
    would later upgrade one row with another entry's page."""
    by_url = dict(known.by_url)
    by_hash = dict(known.by_hash)
    out = Resolution()
    for group, article in built:
        by_page = article.body_source == "page"
        existing = by_url.get(article.url) or (by_hash.get(article.content_hash) if by_page else None)
        if existing:
            article_id = existing
            out.duplicates += len(group)
        else:
            article_id = article.article_id
            by_url[article.url] = article_id
            if by_page:
                by_hash[article.content_hash] = article_id
            out.articles.append(article)
            out.duplicates += len(group) - 1
        out.sightings.extend(sighting(e, article_id, run_id=run_id, now=now) for e in group)
    return out
