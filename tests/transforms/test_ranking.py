from transforms.ranking import Hit, best_of_each_story


def test_one_row_per_story_best_first():
    hits = [
        Hit("a", 5.0, "s1", 10, 3), Hit("b", 7.0, "s1", 11, 2), Hit("c", 7.0, "s1", 9, 1),  # tie: c seen first
        Hit("d", 6.0, "d", 12, 1),
        Hit("e", 6.0, "", 14, 1),  # no story yet: its own; newer than d at the same score
    ]
    assert [(h.article_id, n) for h, n in best_of_each_story(hits, 10)] == [("c", 3), ("e", 1), ("d", 1)]
    assert [h.article_id for h, _ in best_of_each_story(hits, 2)] == ["c", "e"]
    assert best_of_each_story([], 5) == []
