"""Near-duplicate detection costs: signatures, candidate lookup, storage.

    python benchmarks/dedupe.py [--sizes 10000,100000,1000000] [--batch 64]

1. Signature throughput on one core: `transforms.fingerprints.fingerprint`
   (tokenize, shingle, MinHash, band keys) over 800-word articles cut from
   the real bodies of tests/data/extraction.
2. Candidate lookup per new article against histories of N stored story
   roots: the warehouse join on band keys (`story_rows.select_story_roots`)
   plus the decision (`transforms.stories.assign_stories`), for batches of
   new articles of which a quarter are copies of stored ones. The history is
   synthetic: random signatures and band keys (a band key is a hash, so a
   random 64-bit integer is what a real one looks like to the join), plus
   the real roots the copies match.
3. DuckDB storage per article of `article_fingerprints` and `story_bands`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.settings import StorySettings  # noqa: E402
from transforms.fingerprints import fingerprint  # noqa: E402
from transforms.stories import assign_stories  # noqa: E402
from warehouse import story_rows  # noqa: E402
from warehouse.connection import connect  # noqa: E402

EXTRACTION = ROOT / "tests" / "data" / "extraction"
P = StorySettings().params()


def articles_of_800_words(n: int) -> list[str]:
    truth = json.loads((EXTRACTION / "ground-truth.json").read_text(encoding="utf-8"))
    words = " ".join(v["articleBody"] for v in truth.values()).split()
    rng = random.Random(1)
    out = []
    for _ in range(n):
        start = rng.randrange(0, len(words) - 800)
        out.append(" ".join(words[start:start + 800]))
    return out


def signature_throughput(texts: list[str]) -> float:
    started = time.process_time()
    for text in texts:
        fingerprint(text, P)
    return len(texts) / (time.process_time() - started)


FINGERPRINTS_FROM_F = ("INSERT INTO article_fingerprints (article_id, scheme, shingles, signature) "
                       "SELECT article_id, scheme, shingles, signature FROM _f")


def build_history(db: Path, size: int, real_roots: list[tuple[str, object]]) -> None:
    rng = np.random.default_rng(size)
    ids = [f"{i:020x}" for i in range(size)]
    with connect(db) as con:
        step = 100_000
        for start in range(0, size, step):
            chunk = ids[start:start + step]
            n = len(chunk)
            signatures = rng.integers(0, 2**32, size=(n, P.num_perm), dtype=np.uint32)
            con.register("_f", pa.table({
                "article_id": chunk, "scheme": [P.scheme] * n, "shingles": np.full(n, 700, dtype=np.int32),
                "signature": [row.tobytes() for row in signatures],
            }))
            con.execute(FINGERPRINTS_FROM_F)
            con.unregister("_f")
            con.register("_b", pa.table({
                "band_key": rng.integers(-2**63, 2**63 - 1, size=n * P.bands, dtype=np.int64),
                "story_id": np.repeat(np.array(chunk, dtype=object), P.bands),
            }))
            con.execute("INSERT INTO story_bands (band_key, story_id, first_seen_at) SELECT band_key, story_id, now() FROM _b")
            con.unregister("_b")
        con.register("_f", pa.table({
            "article_id": [a for a, _ in real_roots], "scheme": [P.scheme] * len(real_roots),
            "shingles": [f.shingles for _, f in real_roots], "signature": [f.signature for _, f in real_roots],
        }))
        con.execute(FINGERPRINTS_FROM_F)
        con.register("_b", pa.table({
            "band_key": [k for _, f in real_roots for k in f.band_keys],
            "story_id": [a for a, f in real_roots for _ in f.band_keys],
        }))
        con.execute("INSERT INTO story_bands (band_key, story_id, first_seen_at) SELECT band_key, story_id, now() FROM _b")
        con.execute("CHECKPOINT")


def table_bytes(con, table: str) -> int:
    """Bytes of the blocks a table's columns occupy on disk."""
    blocks = con.execute(f"SELECT count(DISTINCT block_id) FROM pragma_storage_info('{table}') "
                         "WHERE block_id >= 0").fetchone()[0]
    block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    return blocks * block_size


def lookup(db: Path, batches: list[list[tuple[str, object]]]) -> tuple[list[float], int]:
    per_article_ms = []
    matched = 0
    with connect(db, read_only=True) as con:
        for batch in batches:
            started = time.perf_counter()
            keys = [k for _, f in batch for k in f.band_keys]
            stored = story_rows.select_story_roots(con, keys, P.scheme, None)
            now = datetime.now(timezone.utc)
            assignments = assign_stories([(a, f, now) for a, f in batch], stored, P)
            per_article_ms.append((time.perf_counter() - started) * 1000 / len(batch))
            matched += sum(not a.is_root for a in assignments)
    return per_article_ms, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()

    texts = articles_of_800_words(2000)
    rate = signature_throughput(texts)
    print(f"scheme {P.scheme}, threshold {P.threshold}, containment {P.containment}")
    print(f"signatures: {rate:,.0f} articles/s on one core (800-word articles, CPU time)")

    # New articles: 3/4 unrelated, 1/4 cut-short copies of real stored roots.
    n_new = args.batch * args.batches
    originals = [(f"real{i:016x}", fingerprint(t, P)) for i, t in enumerate(texts[:n_new // 4])]
    copies = [(f"copy{i:016x}", fingerprint(" ".join(t.split()[:560]), P)) for i, t in enumerate(texts[:n_new // 4])]
    # Unrelated new articles: real words, shuffled, so that they share no
    # more shingles with the stored ones than different articles do.
    shuffler = random.Random(3)
    fresh = []
    for i, t in enumerate(texts[1000:1000 + n_new - len(copies)]):
        words = t.split()
        shuffler.shuffle(words)
        fresh.append((f"new{i:017x}", fingerprint(" ".join(words), P)))
    mixed = copies + fresh
    assert len({a for a, _ in mixed}) == len(mixed)
    random.Random(2).shuffle(mixed)
    batches = [mixed[i:i + args.batch] for i in range(0, len(mixed), args.batch)]

    print(f"\n{'stored roots':>12} | {'lookup ms/article':>17} {'(p50 .. max batch)':>20} | {'matched':>7} | "
          f"{'fingerprints B/article':>22} {'band keys B/article':>19} {'file MB':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.duckdb"
            build_history(db, size, originals)
            lookup(db, batches[:1])  # warm the file cache
            times, matched = lookup(db, batches)
            with connect(db, read_only=True) as con:
                fp_bytes = table_bytes(con, "article_fingerprints")
                band_bytes = table_bytes(con, "story_bands")
            total = size + len(originals)
            print(f"{size:>12,} | {statistics.mean(times):>17.2f} {statistics.median(times):>9.2f} .. "
                  f"{max(times):<8.2f} | {matched:>3}/{len(copies):<3} | {fp_bytes / total:>22,.0f} "
                  f"{band_bytes / total:>19,.0f} {os.path.getsize(db) / 1e6:>8.0f}")


if __name__ == "__main__":
    main()
