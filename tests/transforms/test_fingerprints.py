import random
import subprocess
import sys
from dataclasses import replace

import pytest

from flows.settings import StorySettings
from transforms.fingerprints import fingerprint, shingles, similarity

P = StorySettings().params()
WORDS = [f"w{i}" for i in range(5000)]


def text(seed: int, n: int = 600) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_shingles_are_lowercased_word_ngrams():
    assert shingles("The cat, the HAT.", 2) == {b"the cat", b"cat the", b"the hat"}
    assert shingles("Two words", 3) == {b"two words"}  # shorter than a shingle: one shingle
    assert shingles(" .,;", 3) == set()


def test_cjk_text_is_shingled_by_character():
    # No spaces between words: each ideograph is a token, so edits still leave most shingles.
    grams = shingles("北京时间今天上午", 3)
    assert len(grams) == 6 and b"\xe5\x8c\x97\xe4\xba\xac\xe6\x97\xb6" in {g.replace(b" ", b"") for g in grams}


def test_identical_text_gives_identical_fingerprint_and_similarity_one():
    a, b = fingerprint(text(1), P), fingerprint(text(1), P)
    assert a == b
    assert len(a.values()) == P.num_perm and len(a.band_keys) == P.bands
    s = similarity(a, b)
    assert s.jaccard == 1.0 and s.containment == 1.0


def test_fingerprints_are_the_same_in_another_process():
    # No salted hash(): a signature stored by one run must match the next run's.
    code = ("from flows.settings import StorySettings; from transforms.fingerprints import fingerprint; "
            "f = fingerprint('the quick brown fox jumps over the lazy dog again and again', StorySettings().params()); "
            "print(f.signature.hex(), f.band_keys)")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}, cwd=".").stdout for seed in (1, 2)}
    assert len(outs) == 1


def test_estimated_jaccard_tracks_the_true_one():
    base = text(2).split()
    edited = list(base)
    rng = random.Random(3)
    for i in rng.sample(range(len(base)), 30):  # 5 % of the words
        edited[i] = "changed"
    a, b = " ".join(base), " ".join(edited)
    sa, sb = shingles(a, 3), shingles(b, 3)
    true = len(sa & sb) / len(sa | sb)
    est = similarity(fingerprint(a, P), fingerprint(b, P)).jaccard
    assert abs(est - true) < 0.12  # ~3 standard errors at 128 permutations
    assert similarity(fingerprint(a, P), fingerprint(text(4), P)).jaccard < 0.1


def test_containment_recognises_a_cut_short_copy():
    full = text(5, 1000)
    cut = " ".join(full.split()[:400])
    s = similarity(fingerprint(full, P), fingerprint(cut, P))
    assert s.jaccard < P.threshold  # Jaccard alone would miss it ...
    assert s.containment >= P.containment and s.matches(P)  # ... containment does not


def test_empty_body_gets_an_empty_fingerprint():
    f = fingerprint("", P)
    assert f.shingles == 0 and f.signature == b"" and f.band_keys == ()


def test_scheme_names_every_parameter_and_mismatches_are_refused():
    other = replace(P, shingle_size=5)
    assert other.scheme != P.scheme
    with pytest.raises(ValueError, match="schemes"):
        similarity(fingerprint(text(1), P), fingerprint(text(1), other))
    with pytest.raises(ValueError, match="exceeds num_perm"):
        StorySettings(bands=50, rows=3)


def test_default_banding_catches_truncated_copies_and_ignores_unrelated_text():
    assert P.candidate_probability(0.4) > 0.9
    assert P.candidate_probability(0.02) < 0.001


def test_only_the_signature_settings_make_the_scheme():
    # docs/configuration.md: changing these re-fingerprints every stored
    # article; the others apply to the articles that come next.
    base = StorySettings()
    for key, value in {"shingle_size": 4, "num_perm": 256, "bands": 40, "rows": 2}.items():
        assert base.model_copy(update={key: value}).params().scheme != base.params().scheme, key
    for key, value in {"threshold": 0.7, "containment": 0.9, "min_shingles": 20, "window_days": 0}.items():
        assert base.model_copy(update={key: value}).params().scheme == base.params().scheme, key
