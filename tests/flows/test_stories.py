"""Near-duplicate stories end to end, on the labelled set of tests/neardup_set.py.

Run 1 ingests the 120 originals from one feed; run 2 the 480 syndicated
copies from four partner feeds, so every true match crosses runs. The story
of each page is read back from DuckDB and scored pairwise against the labels.
"""

import pytest

from tests import neardup_set
from tests.conftest import EXTRACTION
from tests.flows.helpers import assert_accounting, query, run_ingest, write_sources

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.slow
def test_labelled_near_duplicates_cluster_into_stories(server, tmp_path, capsys, make_db):
    truth = neardup_set.load_truth(EXTRACTION)
    pages = neardup_set.build(truth)
    for page in pages:
        server.route(page.path, page.html(), content_type="text/html; charset=utf-8")
    feeds = {}
    for name in ("origin", *neardup_set.PARTNERS):
        listed = [p for p in pages if p.feed == name]
        feeds[name] = server.route(f"/feeds/{name}.xml", neardup_set.feed_xml(name, listed, server.url),
                                   content_type="application/rss+xml")
    db = make_db()
    run1 = run_ingest(write_sources(tmp_path / "run1.toml", [("origin", feeds["origin"])], per_host_concurrency=8), db)
    sources = write_sources(tmp_path / "run2.toml", list(feeds.items()), per_host_concurrency=8)
    run2 = run_ingest(sources, db)
    for summary in (run1, run2):
        assert_accounting(summary)
        assert summary["failures"] == 0
    assert run1["articles_new"] == len(truth)
    assert run1["near_duplicates"] == 0, "no two originals are one story"

    story_of_url = dict(query(db, """
        SELECT s.url, a.story_id FROM article_sightings s JOIN articles a USING (article_id)"""))
    predicted = {p.path: story_of_url[server.url(p.path)] for p in pages}
    labels = {p.path: p.cluster for p in pages}
    precision, recall, tp, fp, fn = neardup_set.pair_scores(labels, predicted)

    original_story = {p.cluster: predicted[p.path] for p in pages if p.kind == "original"}
    recall_by_kind = {
        kind: sum(predicted[p.path] == original_story[p.cluster] for p in pages if p.kind == kind) / len(truth)
        for kind in neardup_set.COPY_KINDS
    }
    merged_same_site = sum(original_story[a] == original_story[b] for a, b in neardup_set.same_site_pairs(truth))
    topic_pairs = neardup_set.same_topic_pairs(truth)
    merged_same_topic = sum(original_story[a] == original_story[b] for a, b, _ in topic_pairs)
    with capsys.disabled():
        print(f"\nnear-duplicates on {len(pages)} pages ({len(truth)} stories): pairwise P {precision:.3f} "
              f"R {recall:.3f} (TP {tp}, FP {fp}, FN {fn}); run 2 near-duplicates {run2['near_duplicates']}, "
              f"exact duplicates {run2['duplicates']}")
        print("  copies in their original's story: " + ", ".join(f"{k} {v:.3f}" for k, v in recall_by_kind.items()))
        print(f"  hard negatives merged: same site {merged_same_site}/{len(neardup_set.same_site_pairs(truth))}, "
              f"same topic {merged_same_topic}/{len(topic_pairs)} (closest pair's Jaccard {topic_pairs[0][2]:.3f})")
    assert precision >= 0.95 and recall >= 0.95
    assert merged_same_site == 0 and merged_same_topic == 0

    # duplicate_of names the story's root, and the root is its first-seen article.
    bad = query(db, """
        SELECT count(*) FROM articles a JOIN articles r ON r.article_id = a.story_id
        WHERE (a.article_id = a.story_id) <> (a.duplicate_of IS NULL)
           OR (a.duplicate_of IS NOT NULL AND a.duplicate_of <> a.story_id)
           OR r.duplicate_of IS NOT NULL OR r.first_seen_at > a.first_seen_at""")
    assert bad == [(0,)]
    stories = query(db, "SELECT story_id, articles, sources, source_list, headline FROM stories")
    assert len(stories) == len(set(predicted.values()))
    top = max(stories, key=lambda s: (s[2], s[0]))
    assert top[2] == 5 and top[3] == sorted(["origin", *neardup_set.PARTNERS])
    roots = {p.cluster: p.title for p in pages if p.kind == "original"}
    by_story = {s[0]: s[4] for s in stories}
    assert sum(by_story[original_story[c]] == t for c, t in roots.items()) >= 0.95 * len(roots), \
        "a story's headline is its original's"

    # Stable across runs: a third run changes no story.
    before = query(db, "SELECT article_id, story_id, duplicate_of FROM articles ORDER BY 1")
    run3 = run_ingest(sources, db)
    assert run3["articles_new"] == 0
    assert query(db, "SELECT article_id, story_id, duplicate_of FROM articles ORDER BY 1") == before
