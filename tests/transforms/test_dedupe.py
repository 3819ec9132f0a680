from dataclasses import replace
from datetime import datetime, timezone

from tests.transforms.test_articles import entry
from transforms.articles import build_article
from transforms.dedupe import plan_entries, resolve_duplicates
from transforms.records import KnownKeys

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_plan_groups_same_link_across_feeds_and_skips_seen():
    a1 = entry(source="a", link="https://x.example/s?utm_source=a", canonical_link="https://x.example/s", guid="a-1")
    b1 = entry(source="b", link="https://x.example/s?fbclid=1", canonical_link="https://x.example/s", guid="b-1")
    a2 = entry(source="a", link="https://x.example/t", canonical_link="https://x.example/t", guid="a-2")
    a2_again = replace(a2)
    old = entry(source="a", link="https://x.example/old", canonical_link="https://x.example/old", guid="a-0")
    by_guid = entry(source="a", link="https://x.example/moved", canonical_link="https://x.example/moved", guid="a-9")
    elsewhere = entry(source="c", link="https://x.example/old", canonical_link="https://x.example/old", guid="c-0")
    known = KnownKeys(
        by_url={"https://x.example/old": "id-old"},
        sighted_links=frozenset({("a", "https://x.example/old")}),
        sighted_guids=frozenset({("a", "a-9")}),
    )
    plan = plan_entries([a1, b1, a2, a2_again, old, by_guid, elsewhere], known)
    assert plan.to_fetch == ((a1, b1), (a2,))
    assert plan.of_stored_articles == ((elsewhere, "id-old"),)
    assert plan.already_seen == (a2_again, old, by_guid)


def _article(e, text, url=None, body_source="page"):
    art = build_article(e, None, page_problem="test", run_id="r", now=NOW)
    art = replace(art, body=text, content_hash=text, body_source=body_source)
    return replace(art, url=url, article_id=url) if url else art


def test_resolve_duplicates_by_url_and_hash_in_batch_and_warehouse():
    e1 = entry(source="a", canonical_link="https://x.example/1", link="https://x.example/1")
    e2 = entry(source="b", canonical_link="https://y.example/copy", link="https://y.example/copy")
    e3 = entry(source="c", canonical_link="https://x.example/3", link="https://x.example/3")
    e4 = entry(source="d", canonical_link="https://x.example/4", link="https://x.example/4")
    built = [
        ((e1,), _article(e1, "body one", "https://x.example/1")),
        ((e2,), _article(e2, "body one", "https://y.example/copy")),  # same text elsewhere
        ((e3,), _article(e3, "stored body", "https://x.example/3")),  # hash already stored
        ((e4,), _article(e4, "body four", "https://x.example/4")),
    ]
    known = KnownKeys(by_hash={"stored body": "id-stored"})
    res = resolve_duplicates(built, known, run_id="r", now=NOW)
    assert [a.url for a in res.articles] == ["https://x.example/1", "https://x.example/4"]
    assert res.duplicates == 2
    assert [(s.source, s.article_id) for s in res.sightings] == [
        ("a", "https://x.example/1"), ("b", "https://x.example/1"), ("c", "id-stored"), ("d", "https://x.example/4"),
    ]


def test_feed_text_fallbacks_of_different_links_are_never_merged_by_hash():
    teaser = "Read more…"
    entries = [entry(source="a", canonical_link=f"https://x.example/{i}", link=f"https://x.example/{i}", guid=str(i))
               for i in range(4)]
    built = [((e,), _article(e, teaser, e.canonical_link, body_source="feed")) for e in entries]
    # The same teaser stored already (as feed text of another entry, and as a page body elsewhere) matches neither.
    known = KnownKeys(by_hash={})
    res = resolve_duplicates(built, known, run_id="r", now=NOW)
    assert [a.url for a in res.articles] == [e.canonical_link for e in entries]
    assert res.duplicates == 0
    assert [s.article_id for s in res.sightings] == [e.canonical_link for e in entries]
    # A page body equal to a feed fallback's text is not merged into it either.
    page = entry(source="b", canonical_link="https://y.example/p", link="https://y.example/p")
    res = resolve_duplicates(built[:1] + [((page,), _article(page, teaser, "https://y.example/p"))], KnownKeys(),
                             run_id="r", now=NOW)
    assert len(res.articles) == 2
    # The same URL is still the same article, feed text or not.
    again = resolve_duplicates(built[:1], KnownKeys(by_url={"https://x.example/0": "id-0"}), run_id="r", now=NOW)
    assert again.articles == [] and again.sightings[0].article_id == "id-0"


def test_group_of_entries_counts_one_article_and_the_rest_as_duplicates():
    e1 = entry(source="a")
    e2 = entry(source="b")
    res = resolve_duplicates([((e1, e2), _article(e1, "text"))], KnownKeys(), run_id="r", now=NOW)
    assert len(res.articles) == 1 and res.duplicates == 1
    assert {s.source for s in res.sightings} == {"a", "b"}


def test_global_guids_match_across_feeds_plain_ones_do_not():
    a = entry(source="a", link="https://x.example/s", canonical_link="https://x.example/s", guid="tag:x.example,2023:s")
    b = entry(source="b", link="https://mirror.example/s", canonical_link="https://mirror.example/s", guid="tag:x.example,2023:s")
    c = entry(source="c", link="https://y.example/1", canonical_link="https://y.example/1", guid="1234")
    d = entry(source="d", link="https://z.example/1", canonical_link="https://z.example/1", guid="1234")
    plan = plan_entries([a, b, c, d], KnownKeys())
    assert plan.to_fetch == ((a, b), (c,), (d,))
    stored = KnownKeys(by_guid={"tag:x.example,2023:s": "id-s", "1234": "id-1234"})
    plan = plan_entries([b, d], stored)
    assert plan.of_stored_articles == ((b, "id-s"),)
    assert plan.to_fetch == ((d,),)
