"""What `newsdesk export --format parquet` costs on an archive that spans years.

    python benchmarks/export.py [--articles 1000000] [--days 1826] [--words 380] [--order time|random] [--dir DIR]

1. A warehouse built in SQL, straight into the DuckDB file (as
   benchmarks/scale.py does, because it fakes history): `--articles`
   articles spread evenly over `--days` days back from 2026-01-01, each with
   a body of `--words` words (380 words, ~3 kB) drawn by hash from a
   vocabulary of 4,096 made-up words, so that bodies are distinct and
   compress about as prose does, not as a repeated string. `--order time`
   appends them oldest first, as daily runs do; `--order random` in hash
   order, as a backfill of old feeds might (no day's rows sit together).
   One INSERT per 100k rows.
2. One `newsdesk export --format parquet` of the whole warehouse into an
   empty folder, as a separate process: wall time and peak RSS of the
   process (sampled every 20 ms), then a read-back count of
   `read_parquet('out/**/*.parquet', hive_partitioning = true)`.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from benchmarks.run import run_measured  # noqa: E402
from warehouse.connection import connect  # noqa: E402

NEWSDESK = Path(sys.executable).with_name("newsdesk")
SYLLABLES = "ka lo mi ne ru sa te vi do pe la ro".split()


def vocabulary(n: int = 4096) -> list[str]:
    words = ("".join(p) for k in (2, 3, 4) for p in itertools.product(SYLLABLES, repeat=k))
    return list(itertools.islice(words, n))


def build(db: Path, articles: int, days: int, words: int, order: str, chunk: int = 100_000) -> float:
    started = time.perf_counter()
    with connect(db):
        pass  # the schema, as newsdesk makes it
    con = duckdb.connect(str(db))
    con.execute("SET memory_limit = '4GB'")
    con.execute("SET enable_progress_bar = false")
    vocab = vocabulary()
    # Article k is published `days * k / articles` days after the start; in
    # random order, row i holds article k = a permutation of i.
    slot = "i" if order == "time" else f"(hash(i) % {articles})"
    for lo in range(0, articles, chunk):
        hi = min(lo + chunk, articles)
        con.execute(f"""
            INSERT INTO articles (article_id, url, source, title, published_at, published_date, date_source, language,
                                  body, body_source, word_count, content_hash, first_seen_at, run_id, extractor,
                                  story_id)
            SELECT substr(md5(i::VARCHAR), 1, 20), 'https://news.example/' || (i % 200) || '/' || md5('u' || i),
                   'feed' || (i % 200), 'Story ' || i, p, p::DATE, 'feed', 'en', b, 'page', {words}, sha256(b),
                   p + INTERVAL 20 MINUTE, 'bench', 'bench', substr(md5(i::VARCHAR), 1, 20)
            FROM (SELECT i,
                         TIMESTAMPTZ '2026-01-01 00:00:00+00' - INTERVAL {days} DAY
                           + ({slot} * {days * 86400} // {articles}) * INTERVAL 1 SECOND AS p,
                         array_to_string(list_transform(range({words}), x -> $vocab[1 + (hash(i, x) % {len(vocab)})::INT]),
                                         ' ') AS b
                  FROM range({lo}, {hi}) t(i))
        """, {"vocab": vocab})
        print(f"  built {hi:,} articles ({time.perf_counter() - started:.0f} s)", flush=True)
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=1826)
    parser.add_argument("--words", type=int, default=380)
    parser.add_argument("--order", choices=("time", "random"), default="time")
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="newsdesk-export-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        db, out = work / "bench.duckdb", work / "out"
        if not db.exists():
            print(f"building {args.articles:,} articles over {args.days} days in {db}", flush=True)
            built = build(db, args.articles, args.days, args.words, args.order)
            print(f"built in {built:.0f} s", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        size = db.stat().st_size
        wall, peak, printed = run_measured([str(NEWSDESK), "export", "--format", "parquet", "--out", str(out),
                                            "--db", str(db)], env=None)
        con = duckdb.connect()
        n, days = con.execute("SELECT count(*), count(DISTINCT published_date) FROM read_parquet($g, "
                              "hive_partitioning = true)", {"g": f"{out}/**/*.parquet"}).fetchone()
        files = sum(1 for _ in out.rglob("*.parquet"))
        written = sum(p.stat().st_size for p in out.rglob("*.parquet"))
        body_bytes = duckdb.connect(str(db), read_only=True).execute(
            "SELECT avg(strlen(body))::INT FROM articles").fetchone()[0]
        print(printed.strip())
        print(f"warehouse: {size / 2**20:,.0f} MiB, {args.order} order, bodies {body_bytes} bytes on average")
        print(f"export --format parquet: {wall:.1f} s wall, peak RSS {peak / 2**20:,.0f} MiB")
        print(f"read back: {n:,} articles, {days} days, {files} files, {written / 2**20:,.0f} MiB")
        if n != args.articles:
            raise SystemExit(f"read back {n} articles, expected {args.articles}")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
