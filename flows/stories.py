"""Wiring for story clusters: candidates from the warehouse, decisions in
`transforms.stories`, rows back to the warehouse."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from transforms.fingerprints import StoryParams, fingerprint
from transforms.records import Article
from transforms.stories import StoryRoot, assign_stories, candidate_window
from warehouse import story_rows
from warehouse.connection import Connection, connect


def cluster_new(con: Connection, articles: Sequence[Article],
                params: StoryParams) -> tuple[list[Article], int]:
    """Give each new article (fingerprinted at extraction) its story. Returns
    the articles ready to load and how many joined an existing story."""
    keys = [k for a in articles if a.fingerprint for k in a.fingerprint.band_keys]
    window = candidate_window([a.first_seen_at for a in articles], params)
    stored = story_rows.select_story_roots(con, keys, params.scheme, window)
    assignments = assign_stories([(a.article_id, a.fingerprint, a.first_seen_at) for a in articles], stored, params)
    out = [
        replace(a, story_id=s.story_id, duplicate_of=s.duplicate_of, story_similarity=s.similarity)
        for a, s in zip(articles, assignments)
    ]
    return out, sum(not s.is_root for s in assignments)


def cluster_backlog(target: Path | str, params: StoryParams, chunk: int = 2_000) -> int:
    """Fingerprint the articles that have no fingerprint under the current
    settings, and cluster those that have no story yet (a warehouse from
    before stories existed). Returns how many articles it went through."""
    done = 0
    while True:
        with connect(target) as con:
            backlog = story_rows.select_fingerprint_backlog(con, params.scheme, chunk)
            if not backlog:
                return done
            prints = [(b.article_id, fingerprint(b.body, params)) for b in backlog]
            keys = [k for _, f in prints for k in f.band_keys]
            window = candidate_window([b.first_seen_at for b in backlog], params)
            stored = story_rows.select_story_roots(con, keys, params.scheme, window)
            # Roots of this chunk are re-fingerprinted here, not yet in story_bands.
            for b, (_, fp) in zip(backlog, prints):
                if b.story_id == b.article_id:
                    for key in fp.band_keys:
                        stored.setdefault(key, []).append(StoryRoot(b.article_id, fp, b.first_seen_at))
            unclustered = [(a, f, b.first_seen_at) for (a, f), b in zip(prints, backlog) if b.story_id is None]
            assignments = assign_stories(unclustered, stored, params)
            story_rows.save_stories(con, prints, [(s.article_id, s.story_id, s.duplicate_of, s.similarity)
                                            for s in assignments])
        done += len(backlog)
        if len(backlog) < chunk:
            return done
