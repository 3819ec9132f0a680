"""Search results one row per story: the best-scoring article of each story
among the index's hits, with how many of the story's articles matched."""

from __future__ import annotations

from typing import NamedTuple, Sequence


class Hit(NamedTuple):
    article_id: str
    score: float  # BM25
    story_id: str  # the article's own id when it has no story yet
    day: int  # published_date, days since 1970-01-01
    first_seen: int  # first_seen_at, microseconds since the epoch


def best_of_each_story(hits: Sequence[Hit], limit: int) -> list[tuple[Hit, int]]:
    """(best hit, hits of its story), best first: higher score, then newer,
    then article_id; within a story the earliest-seen article wins a tie."""
    stories: dict[str, list[Hit]] = {}
    for hit in hits:
        stories.setdefault(hit.story_id or hit.article_id, []).append(hit)
    best = [(min(group, key=lambda h: (-h.score, h.first_seen, h.article_id)), len(group))
            for group in stories.values()]
    best.sort(key=lambda b: (-b[0].score, -b[0].day, b[0].article_id))
    return best[:limit]
