"""Sweep the [dedupe] settings over the labelled near-duplicate set.

Runs the pure transforms only (no HTTP, no Prefect, no DuckDB): fingerprints
of the 600 bodies of tests/neardup_set.py, originals clustered first, then
the copies, scored pairwise. Also counts the candidate pairs that LSH hands
to verification among the 7,140 pairs of different originals, which is what
the candidate join costs at scale. Prints one line per configuration.

    python benchmarks/dedupe_sweep.py
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from itertools import combinations, product
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.settings import StorySettings  # noqa: E402
from tests import neardup_set  # noqa: E402
from transforms.fingerprints import StoryParams, fingerprint  # noqa: E402
from transforms.stories import assign_stories  # noqa: E402

EXTRACTION = ROOT / "tests" / "data" / "extraction"


def evaluate(pages, truth, params: StoryParams) -> dict:
    started = time.perf_counter()
    prints = {p.path: fingerprint("\n\n".join(p.paragraphs), params) for p in pages}
    per_article_ms = (time.perf_counter() - started) * 1000 / len(pages)
    stored: dict[int, list] = {}
    predicted: dict[str, str] = {}
    seen = datetime(2026, 1, 1, tzinfo=timezone.utc)  # one day: the window never decides here
    for run in (1, 2):
        batch = [p for p in pages if p.run == run]
        for page, a in zip(batch, assign_stories([(p.path, prints[p.path], seen) for p in batch], stored, params)):
            predicted[page.path] = a.story_id
            if a.is_root:
                from transforms.records import StoryRoot
                for key in prints[page.path].band_keys:
                    stored.setdefault(key, []).append(StoryRoot(page.path, prints[page.path], seen))
    precision, recall, *_ = neardup_set.pair_scores({p.path: p.cluster for p in pages}, predicted)
    originals = [p for p in pages if p.kind == "original"]
    false_candidates = sum(
        bool(set(prints[a.path].band_keys) & set(prints[b.path].band_keys)) for a, b in combinations(originals, 2)
    )
    truncated = [p for p in pages if p.kind == "truncated"]
    origin = {p.cluster: p.path for p in originals}
    trunc_recall = sum(predicted[p.path] == predicted[origin[p.cluster]] for p in truncated) / len(truncated)
    return dict(P=precision, R=recall, truncated=trunc_recall, false_candidates=false_candidates,
                ms=per_article_ms)


def main() -> None:
    truth = neardup_set.load_truth(EXTRACTION)
    pages = neardup_set.build(truth)
    print(f"{len(pages)} pages, {len(truth)} stories; false candidates counted over "
          f"{len(truth) * (len(truth) - 1) // 2} pairs of different originals")
    print(f"{'k':>2} {'perm':>4} {'bands':>9} {'thr':>4} {'cont':>4} | {'P':>6} {'R':>6} {'trunc R':>7} "
          f"{'false cand':>10} {'ms/article':>10}")
    layouts = [(128, 32, 4), (128, 42, 3), (128, 64, 2), (256, 85, 3), (256, 64, 4), (112, 14, 8)]
    for k, (perm, bands, rows), thr, cont in product((3, 5), layouts, (0.5,), (0.7, 0.8)):
        params = StoryParams(shingle_size=k, num_perm=perm, bands=bands, rows=rows, threshold=thr, containment=cont,
                              min_shingles=StorySettings().min_shingles, window_days=StorySettings().window_days)
        r = evaluate(pages, truth, params)
        print(f"{k:>2} {perm:>4} {bands:>4}×{rows:<4} {thr:>4} {cont:>4} | {r['P']:.3f} {r['R']:.3f} "
              f"{r['truncated']:>7.3f} {r['false_candidates']:>10} {r['ms']:>10.2f}")


if __name__ == "__main__":
    main()
