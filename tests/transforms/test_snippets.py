from transforms.snippets import snippet

BODY = ("The weather was calm.\n\nNorth Korean leader Kim Jong-Un is on his way to Russia this morning, "
        "travelling by armoured train to meet President Putin. " + "Filler words go here. " * 20)


def test_window_starts_near_the_first_match_and_marks_the_cuts():
    s = snippet(BODY, "putin", width=80)
    assert "Putin" in s and s.startswith("…") and s.endswith("…")
    assert len(s) <= 82 and "\n" not in s


def test_stem_like_prefixes_match_inflected_words():
    assert "travelling" in snippet(BODY, "travel", width=60)


def test_no_match_gives_the_start_of_the_body():
    assert snippet(BODY, "zzz", width=40).startswith("The weather was calm.")
    assert snippet("short text", "x") == "short text"
