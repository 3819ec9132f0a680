import random
from datetime import datetime, timedelta, timezone

from flows.settings import StorySettings
from transforms.fingerprints import fingerprint
from transforms.records import StoryRoot
from transforms.stories import assign_stories, candidate_window

P = StorySettings().params()
T = datetime(2026, 3, 1, tzinfo=timezone.utc)
WORDS = [f"w{i}" for i in range(5000)]


def words(seed: int, n: int = 400) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(n)]


def fp(ws: list[str]):
    return fingerprint(" ".join(ws), P)


def at(items, when=T):
    """(id, fingerprint) pairs as new articles first seen at `when`."""
    return [(a, f, when) for a, f in items]


def index(roots: list[StoryRoot]) -> dict:
    out: dict = {}
    for root in roots:
        for key in root.fingerprint.band_keys:
            out.setdefault(key, []).append(root)
    return out


def test_first_article_is_the_root_and_copies_point_at_it():
    a = words(1)
    got = assign_stories(at([("a", fp(a)), ("b", fp(a[:380] + ["x"] * 20)), ("c", fp(words(2)))]), {}, P)
    assert [(s.article_id, s.story_id, s.duplicate_of) for s in got] == [
        ("a", "a", None), ("b", "a", "a"), ("c", "c", None)]
    assert got[1].similarity > 0.5 and got[0].is_root


def test_new_article_joins_a_stored_story():
    a = words(1)
    stored = index([StoryRoot("old", fp(a), T)])
    [s] = assign_stories(at([("new", fp(a[:300]))]), stored, P)  # cut short: matched by containment
    assert (s.story_id, s.duplicate_of) == ("old", "old")
    assert s.containment > 0.8


def test_no_chain_of_weak_links():
    # b is close to a, c is close to b but not to a: c must not join a's story.
    a = words(1)
    b = a[:300] + words(2, 100)  # shares 3/4 of a: Jaccard ~0.6
    c = b[100:] + words(3, 100)  # shares 3/4 of b, but only half of a
    got = assign_stories(at([("a", fp(a)), ("b", fp(b)), ("c", fp(c))]), {}, P)
    assert got[1].story_id == "a"
    assert got[2].story_id == "c" and got[2].duplicate_of is None


def test_joins_the_closest_of_two_matching_stories():
    base = words(1)
    near = base[:390] + words(5, 10)
    far = base[:300] + words(6, 100)
    stored = index([StoryRoot("far", fp(far), T), StoryRoot("near", fp(near), T)])
    [s] = assign_stories(at([("new", fp(base))]), stored, P)
    assert s.story_id == "near"


def test_short_bodies_only_match_exactly():
    tiny = fingerprint("breaking news update", P)
    got = assign_stories(at([("a", tiny), ("b", tiny)]), {}, P)
    assert [s.story_id for s in got] == ["a", "b"]


def test_stories_never_merge_and_an_article_never_matches_itself():
    a = words(1)
    stored = index([StoryRoot("x", fp(a), T), StoryRoot("y", fp(words(9)), T)])
    [s] = assign_stories(at([("x", fp(a))]), stored, P)  # re-assigning a stored root
    assert s.story_id == "x" and s.duplicate_of is None


def test_roots_outside_the_window_are_not_candidates():
    a = words(1)
    stored = index([StoryRoot("recent", fp(a), T - timedelta(days=29)), StoryRoot("old", fp(a), T - timedelta(days=31))])
    [s] = assign_stories(at([("new", fp(a))]), stored, P)
    assert P.window_days == 30 and s.story_id == "recent"
    only_old = index([StoryRoot("old", fp(a), T - timedelta(days=31))])
    [s] = assign_stories(at([("new", fp(a))]), only_old, P)
    assert s.is_root
    # 0 turns the window off: any root, however old.
    unlimited = StorySettings(window_days=0).params()
    [s] = assign_stories(at([("new", fp(a))]), only_old, unlimited)
    assert s.story_id == "old"
    assert candidate_window([T], unlimited) is None


def test_the_window_is_measured_from_each_article_not_the_batch():
    # A backlog chunk spans months: each article sees only roots near its own first sighting.
    a, b = words(1), words(2)
    stored = index([StoryRoot("a-root", fp(a), T), StoryRoot("b-root", fp(b), T + timedelta(days=90))])
    early, late = assign_stories([("a-copy", fp(a), T + timedelta(days=1)), ("late-a", fp(a), T + timedelta(days=90)),
                                  ("b-copy", fp(b), T + timedelta(days=89))][::2], stored, P)
    assert early.story_id == "a-root" and late.story_id == "b-root"
    [stale] = assign_stories([("late-a", fp(a), T + timedelta(days=90))], stored, P)
    assert stale.is_root
    assert candidate_window([T + timedelta(days=1), T + timedelta(days=89)], P) == (
        T + timedelta(days=1) - timedelta(days=30), T + timedelta(days=89) + timedelta(days=30))
