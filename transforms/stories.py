"""Story clusters: which stored story, if any, a new article belongs to.

The rule, chosen so that clusters cannot drift:

- Every story has a root: its first-seen article. `story_id` is the root's
  article_id, and every other member has `duplicate_of` = the root.
- A new article joins a story only if it matches that story's *root* on its
  own (estimated Jaccard ≥ threshold, or containment ≥ the containment
  threshold for a cut-short copy). Matching a later member is not enough, so
  every member is within the threshold of the root and no chain of weak links
  (A~B, B~C, C~D ...) can grow a story.
- When an article matches the roots of several stories it joins the closest:
  highest Jaccard, then highest containment, then the smallest story_id.
- Stories never merge and an article never changes story: a story_id once
  given stays valid across runs.
- Copies of a story appear within days of each other, so an article is
  matched only against roots first seen within `window_days` of it (0: any).
  This is also what keeps a run's candidate lookup bounded by the window,
  not by the whole history.

Only roots are candidates, so only roots need band keys in the warehouse.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence, TypeGuard

from transforms.fingerprints import StoryParams, similarity
from transforms.records import Fingerprint
from transforms.records import StoryRoot as StoryRoot  # the stored side of assign_stories, imported from here


@dataclass(frozen=True, slots=True)
class Assignment:
    article_id: str
    story_id: str
    duplicate_of: str | None  # the story's root; None for a root itself
    similarity: float | None = None  # estimated Jaccard with the root
    containment: float | None = None

    @property
    def is_root(self) -> bool:
        return self.duplicate_of is None


def _matchable(fp: Fingerprint | None, params: StoryParams) -> TypeGuard[Fingerprint]:
    return fp is not None and fp.scheme == params.scheme and fp.shingles >= params.min_shingles


def candidate_window(first_seen: Sequence[datetime], params: StoryParams) -> tuple[datetime, datetime] | None:
    """First-seen times of the roots that articles seen at these times may
    join (the warehouse reads only those); None when the window is off."""
    if not params.window_days or not first_seen:
        return None
    window = timedelta(days=params.window_days)
    return min(first_seen) - window, max(first_seen) + window


def assign_stories(
    new: Sequence[tuple[str, Fingerprint | None, datetime]],
    stored: Mapping[int, Sequence[StoryRoot]],
    params: StoryParams,
) -> list[Assignment]:
    """Assign each new article (id, fingerprint, first seen), in the given
    (first-seen) order, to a story.

    `stored` maps band keys to the stored roots that have them (the warehouse
    returns only keys the new articles share). Articles that become roots are
    indexed as they go, so later articles of the same batch can join them."""
    index: dict[int, list[StoryRoot]] = defaultdict(list)
    for key, roots in stored.items():
        index[key].extend(roots)
    window = timedelta(days=params.window_days) if params.window_days else None
    out: list[Assignment] = []
    for article_id, fp, first_seen in new:
        if not _matchable(fp, params):
            out.append(Assignment(article_id, article_id, None))
            continue
        matches: list[tuple[float, float, str, StoryRoot]] = []
        seen: set[str] = set()
        for key in fp.band_keys:
            for root in index.get(key, ()):
                if root.story_id in seen or root.story_id == article_id:
                    continue
                seen.add(root.story_id)
                if not _matchable(root.fingerprint, params):
                    continue
                if window is not None and abs(root.first_seen_at - first_seen) > window:
                    continue
                sim = similarity(fp, root.fingerprint)
                if not sim.matches(params):
                    continue
                matches.append((-sim.jaccard, -sim.containment, root.story_id, root))
        if not matches:
            out.append(Assignment(article_id, article_id, None))
            root = StoryRoot(article_id, fp, first_seen)
            for key in fp.band_keys:
                index[key].append(root)
        else:
            jaccard, containment, story_id, _ = min(matches, key=lambda m: m[:3])
            out.append(Assignment(article_id, story_id, story_id, -jaccard, -containment))
    return out

