"""What a run costs as the warehouse grows: empty, 100k and 1M articles.

    python benchmarks/scale.py [--sizes 100000 1000000] [--runs 2] [--dir DIR]

1. A template: one `newsdesk ingest` of the 120 real pages of
   tests/data/extraction, served from 127.0.0.1 (real rows: bodies,
   fingerprints, band keys, sightings, runs, feed polls).
2. Growth, in SQL, straight into the DuckDB file (this script is the only
   place outside warehouse/ that does so, because it fakes history): copy k
   of a template article gets a new article_id (md5 of id/k), URL (?copy=k),
   body (a "[copy k]" marker appended, so every body and content_hash is
   distinct and nothing compresses as a duplicate), published and first-seen
   times spread over 100 days back, its own story (a root) whose band keys are
   the template's rehashed with k (so replicas never collide with real
   articles or each other), a sighting, a fingerprint; one `runs` row per 200
   articles and ten `feed_polls` per run. One INSERT ... SELECT ... CROSS JOIN
   range() per ~100k rows, never row by row. Then `newsdesk reindex`.
3. At each size: `--runs` runs, each of 40 new pages (a fresh variant of 40 of
   the real pages, in 10 RSS feeds on 127.0.0.1), as a fresh `newsdesk ingest`
   process against a warm `prefect server`: wall time and peak RSS of the
   process tree; search latency of 20 queries in this process (one warm-up
   pass, then the measured pass); DuckDB file and index directory sizes;
   `newsdesk reindex` wall time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from benchmarks.run import (  # noqa: E402
    build_corpus,
    run_measured,
    serve,
    start_prefect,
    write_sources,
)
from tests.httpserver import LocalServer  # noqa: E402

QUERIES = ["president", "police said", "climate change", "election results", "court ruling", "health care",
           "stock market", "Syria refugees", "Trump administration", "electric car battery", "school teachers",
           "city council", "football season", "prime minister", "trade war China", "fire department",
           "Apple iPhone", "interest rates", "hospital patients", "space station"]
PER_RUN = 40


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def grow(db: Path, target: int, final: int, template_run: str, chunk_rows: int = 100_000) -> float:
    """Replicate the template run's articles until the warehouse holds `target`.
    History is appended in time order, as runs append it: copy k is first seen
    (final copies - k) steps before now, the steps spreading `final` articles
    over 100 days (10k a day at 1M)."""
    started = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("SET memory_limit = '4GB'")
    con.execute("SET enable_progress_bar = false")
    con.execute("CREATE TEMP TABLE tpl AS SELECT * FROM articles WHERE run_id = ?", [template_run])
    per_copy = con.execute("SELECT count(*) FROM tpl").fetchone()[0]
    have = con.execute("SELECT count(*) FROM articles").fetchone()[0]
    first_copy = con.execute("SELECT count(*) FROM articles WHERE url LIKE '%?copy=%'").fetchone()[0] // per_copy + 1
    copies = max(0, (target - have) // per_copy)
    final_copy = final // per_copy
    seconds_per_copy = 100 * 86400 / final_copy
    step = max(1, chunk_rows // per_copy)
    for lo in range(first_copy, first_copy + copies, step):
        hi = min(lo + step, first_copy + copies)
        con.begin()
        con.execute("""
            CREATE OR REPLACE TEMP TABLE batch AS
            SELECT t.article_id AS template_id, r.k,
                   substr(md5(t.article_id || '/' || r.k), 1, 20) AS new_id,
                   (? - r.k) * ? * INTERVAL 1 SECOND AS shift
            FROM tpl t CROSS JOIN range(?, ?) r(k)
        """, [final_copy, seconds_per_copy, lo, hi])
        con.execute("""
            INSERT INTO articles BY NAME
            SELECT b.new_id AS article_id, t.url || '?copy=' || b.k AS url, t.source, t.title, t.author,
                   t.published_at - b.shift AS published_at, (t.published_at - b.shift)::DATE AS published_date,
                   t.date_source, t.date_note, t.language, t.body || ' [copy ' || b.k || ']' AS body,
                   t.body_source, t.body_note, t.word_count + 2 AS word_count,
                   sha256(t.content_hash || b.k) AS content_hash, t.first_seen_at - b.shift AS first_seen_at,
                   'replica-' || (b.k // 2) AS run_id, t.extractor, b.new_id AS story_id
            FROM batch b JOIN tpl t ON t.article_id = b.template_id
            ORDER BY first_seen_at
        """)
        con.execute("""
            INSERT INTO article_sightings BY NAME
            SELECT t.source, t.url || '?copy=' || b.k AS canonical_link, b.new_id AS article_id,
                   t.url || '?copy=' || b.k AS url, t.url || '?copy=' || b.k AS guid,
                   t.first_seen_at - b.shift AS seen_at, 'replica-' || (b.k // 2) AS run_id
            FROM batch b JOIN tpl t ON t.article_id = b.template_id
            ORDER BY seen_at
        """)
        con.execute("""
            INSERT INTO article_fingerprints BY NAME
            SELECT b.new_id AS article_id, f.scheme, f.shingles, f.signature
            FROM batch b JOIN article_fingerprints f ON f.article_id = b.template_id
        """)
        con.execute("""
            INSERT INTO story_bands BY NAME
            SELECT (hash(s.band_key, b.k) >> 1)::BIGINT AS band_key, b.new_id AS story_id,
                   t.first_seen_at - b.shift AS first_seen_at
            FROM batch b JOIN tpl t ON t.article_id = b.template_id JOIN story_bands s ON s.story_id = b.template_id
            ORDER BY t.first_seen_at - b.shift
        """)
        # One run per two copies (~240 articles), ten feed polls per run.
        con.execute("""
            INSERT INTO runs (run_id, started_at, finished_at, status, feeds_total, feeds_ok, articles_new)
            SELECT 'replica-' || k // 2, now() - (? - k) * ? * INTERVAL 1 SECOND,
                   now() - (? - k) * ? * INTERVAL 1 SECOND, 'completed', 10, 10, 240
            FROM range(?, ?) r(k) WHERE k % 2 = 0
        """, [final_copy, seconds_per_copy, final_copy, seconds_per_copy, lo, hi])
        con.execute("""
            INSERT INTO feed_polls (run_id, source, fetched_at, status, ok, not_modified, error, entries, new_entries)
            SELECT 'replica-' || k // 2, 'feed-' || f, now() - (? - k) * ? * INTERVAL 1 SECOND, 200, true, false, NULL,
                   24, 24
            FROM range(?, ?) r(k), range(10) g(f) WHERE k % 2 = 0
        """, [final_copy, seconds_per_copy, lo, hi])
        con.commit()
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - started


def search_latency(db: Path) -> tuple[float, float, float]:
    """p50, p95 and max in ms of the measured pass (after a warm-up pass)."""
    from flows import search_index
    from warehouse.connection import connect

    times = []
    with connect(db, read_only=True) as con:
        for q in QUERIES:  # warm-up: opening the index, page cache
            search_index.search(con, db, q)
        for q in QUERIES:
            started = time.perf_counter()
            search_index.search(con, db, q)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(round(0.95 * (len(times) - 1)))], times[-1]


def count(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="newsdesk: run cost as the warehouse grows")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=2, help="40-article runs measured at each size")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temp dir)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="measure runs against this already grown warehouse (its index in sync) beside a fresh "
                             "empty one, in the same minutes, instead of growing one")
    parser.add_argument("--timeline", action="store_true",
                        help="before the measured runs at each size, one more run under benchmarks/memory_timeline.py "
                             "(each process's memory over time beside the flow's log), printed")
    parser.add_argument("--first-variant", type=int, default=1,
                        help="variant of the real pages the first run gets; with --reuse, pick one above those "
                             "the warehouse holds, or its runs find only exact duplicates")
    args = parser.parse_args()
    tmp = args.dir or Path(tempfile.mkdtemp(prefix="newsdesk-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    cli = [str(bin_dir / "newsdesk")]
    originals = 120
    rows = []

    server = LocalServer()
    server.__enter__()
    prefect, _api, env = start_prefect(tmp / "prefect-home", wait_s=600)
    batch_no = args.first_variant - 1

    def pages_for_run() -> Path:
        nonlocal batch_no
        batch_no += 1
        # Variant batch_no of the first 40 real pages: new URLs, new bodies.
        pages = build_corpus(originals * (batch_no + 1))[originals * batch_no:originals * batch_no + PER_RUN]
        return write_sources(tmp / f"run{batch_no}.toml", serve(server, pages, f"r{batch_no}"), 2)

    def measure(label: str, db: Path, reindex: bool) -> None:
        print(f"[{label}] measuring", flush=True)
        reindex_s = None
        if reindex:
            reindex_s, reindex_rss, _ = run_measured([*cli, "reindex", "--db", str(db)], env)
            print(f"  reindex {reindex_s:.1f} s, peak RSS {reindex_rss / 1e6:.0f} MB", flush=True)
        if args.timeline:
            print(f"  memory timeline of one more run ({label}):", flush=True)
            timeline = subprocess.run(
                [sys.executable, str(ROOT / "benchmarks" / "memory_timeline.py"), "--every", "0.1", "--",
                 *cli, "ingest", "--sources", str(pages_for_run()), "--db", str(db)],
                env={**env, "PREFECT_LOGGING_LEVEL": "INFO"}, capture_output=True, text=True, cwd=ROOT)
            print("\n".join("    " + line for line in timeline.stdout.splitlines()), flush=True)
        walls, peaks = [], []
        for _ in range(args.runs):
            per_process: dict[str, int] = {}
            wall, peak, _ = run_measured([*cli, "ingest", "--quiet", "--sources", str(pages_for_run()), "--db", str(db)],
                                         env, per_process=per_process)
            walls.append(wall)
            peaks.append(peak)
            own = ", ".join(f"{name} {rss / 1e6:.0f}" for name, rss in sorted(per_process.items(), key=lambda kv: -kv[1]))
            print(f"  run: {wall:.1f} s, peak RSS {peak / 1e6:.0f} MB (each process's own peak, MB: {own})", flush=True)
        stages = count(db, f"""SELECT articles_new, round(epoch(finished_at - started_at), 2), round(fetch_s, 2),
                                      round(extract_s, 2), round(dedupe_s, 2), round(load_s, 2)
                               FROM runs WHERE run_id NOT LIKE 'replica-%' ORDER BY started_at DESC LIMIT {args.runs}""")
        print(f"  flow runs (new, wall, fetch, extract, dedupe, load): {stages}", flush=True)
        p50, p95, worst = search_latency(db)
        articles = count(db, "SELECT count(*) FROM articles")[0][0]
        print(f"  {articles} articles; search p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {worst:.0f} ms; DuckDB "
              f"{_size(db) / 1e6:.0f} MB, index {_size(Path(str(db) + '.search')) / 1e6:.0f} MB", flush=True)
        rows.append(dict(label=label, articles=articles, walls=walls, peaks=peaks, p50=p50, p95=p95, worst=worst,
                         db_mb=_size(db) / 1e6, index_mb=_size(Path(str(db) + ".search")) / 1e6, reindex_s=reindex_s,
                         flow=[s[1] for s in stages]))

    try:
        # Prefect's first flow run creates the flow: before anything is timed.
        subprocess.run([*cli, "ingest", "--quiet", "--sources", str(pages_for_run()), "--db", str(tmp / "warm.duckdb")],
                       env=env, check=True, capture_output=True, cwd=ROOT)
        empty = tmp / "empty.duckdb"
        if args.reuse:
            measure("empty", empty, reindex=False)
            measure(args.reuse.name, args.reuse, reindex=False)
            rows[-1]["reindex_s"] = float("nan")
        else:
            measure("empty", empty, reindex=False)
        reindex_empty, _, _ = run_measured([*cli, "reindex", "--db", str(empty)], env)
        rows[0]["reindex_s"] = reindex_empty
        if not args.reuse:
            template = tmp / "template.duckdb"
            sources = write_sources(tmp / "template.toml", serve(server, build_corpus(originals), "tpl"), 2)
            subprocess.run([*cli, "ingest", "--quiet", "--sources", str(sources), "--db", str(template)], env=env,
                           check=True, capture_output=True, cwd=ROOT)
            template_run = count(template, "SELECT run_id FROM runs")[0][0]
            db = tmp / "scale.duckdb"
            shutil.copy(template, db)
            for size in args.sizes:
                seconds = grow(db, size, max(args.sizes), template_run)
                print(f"grew to {count(db, 'SELECT count(*) FROM articles')[0][0]} articles in {seconds:.0f} s", flush=True)
                measure(f"{size // 1000}k", db, reindex=True)
    finally:
        prefect.terminate()
        prefect.wait(timeout=30)
        server.__exit__(None, None, None)

    base = rows[0]
    print("\n| warehouse | articles | 40-article run, wall s | vs empty | flow run s | peak RSS MB | vs empty "
          "| search p50 / p95 / max ms | DuckDB MB | index MB | reindex s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        wall, peak = statistics.median(r["walls"]), max(r["peaks"])
        print(f"| {r['label']} | {r['articles']:,} | {' / '.join(f'{w:.1f}' for w in r['walls'])} "
              f"| {wall / statistics.median(base['walls']):.2f}x | {' / '.join(f'{w:.1f}' for w in r['flow'])} "
              f"| {peak / 1e6:.0f} | {peak / max(base['peaks']):.2f}x "
              f"| {r['p50']:.0f} / {r['p95']:.0f} / {r['worst']:.0f} | {r['db_mb']:.0f} | {r['index_mb']:.0f} "
              f"| {r['reindex_s']:.1f} |")
    print(f"\n(work directory {tmp})")


if __name__ == "__main__":
    main()
