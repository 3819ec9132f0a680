"""The file and the lake on the same corpus: what a lake costs a run, what
it gives a reader beside a run, and how several writers share one lake.

    python benchmarks/lake.py [--sizes 100000] [--runs 2] [--commits 20] [--dir DIR]
                              [--skip-cold] [--skip-scale] [--skip-readers] [--skip-writers] [--profile]

Everything runs on this machine and talks only to 127.0.0.1: a real
PostgreSQL (tests/postgres.py) holds every lake's catalog and keyed state,
one database per lake; pages and feeds come from a local HTTP server; runs
are fresh `newsdesk ingest` processes against a warm `prefect server`, as in
benchmarks/run.py and benchmarks/scale.py, whose machinery this reuses.

1. Cold run: the 120 real pages of tests/data/extraction (10 feeds) into a
   new file and into a new lake (made just before, and timed apart): process
   wall, pages/s, the flow run's stages from its `runs` row.
2. The 40-article run at empty and at each of `--sizes`: the file is grown
   in SQL as benchmarks/scale.py grows it (from step 1's file as the
   template), `newsdesk reindex`ed, then `newsdesk migrate --to` a new lake
   (timed), which is `newsdesk reindex`ed too; then `--runs` runs of 40 new
   pages each on the file and on the lake, alternating, the same pages for
   both. With `--profile` (or when the lake's ratio passes 1.5x), one more
   run each on the empty and the grown lake with PostgreSQL logging every
   statement and DuckDB's per-stage times, summed by statement.
3. A reader beside a run: while 40 new pages are ingested into the largest
   warehouse, another process runs `select count(*), max(first_seen_at)
   from articles` in a loop (every 50 ms): on the lake through one plain
   DuckDB connection with the lake attached read-only (warehouse.lake.attach)
   and held open; on the file by opening it read-only for each query (a
   reader holding the file open would stop the writer). Latencies, failures
   and what failed.
4. Commits per second of 1, 2 and 4 writer processes to one new lake, each
   with its own connection, each committing `--commits` batches of
   `--articles` synthetic articles (with fingerprints, sightings) through
   warehouse.article_rows.load_batch wrapped in flows.conflicts.retrying, as the
   flow wraps its loads; retries counted; directly and behind a 10 ms proxy
   (tests/latency_proxy.py) in front of PostgreSQL.

A markdown table of all figures is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import build_corpus, run_measured, serve, start_prefect, write_sources  # noqa: E402
from benchmarks.scale import _size, count, grow  # noqa: E402

ORIGINALS = 120
PER_RUN = 40
READER_SQL = "SELECT count(*), max(first_seen_at) FROM articles"
READER_PAUSE_S = 0.05


# -- the children: a reader, a writer --------------------------------------------------------------


def reader_child(kind: str, target: str, stop: Path) -> None:
    """Query in a loop until `stop` exists; one JSON line of samples at the end."""
    import duckdb

    samples = []
    con = None
    if kind == "lake":
        from warehouse.lake import attach
        from warehouse.target import parse_target

        con = duckdb.connect()
        attach(con, parse_target(target), read_only=True)
    print("ready", flush=True)
    while not stop.exists():
        started = time.time()
        t0 = time.perf_counter()
        try:
            if kind == "lake":
                n, _ = con.execute(READER_SQL).fetchone()
            else:
                each = duckdb.connect(target, read_only=True)
                try:
                    n, _ = each.execute(READER_SQL).fetchone()
                finally:
                    each.close()
            samples.append([started, time.perf_counter() - t0, n, None])
        except duckdb.Error as exc:
            samples.append([started, time.perf_counter() - t0, None, f"{type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160]}"])
        time.sleep(READER_PAUSE_S)
    print(json.dumps(samples), flush=True)


def writer_child(target: str, writer: int, commits: int, per_commit: int) -> None:
    """Connect, prepare the batches, say ready, wait for 'go' on stdin, then
    commit them one by one through the real load path; one JSON line."""
    import hashlib
    from datetime import datetime, timezone

    from flows.conflicts import retrying
    from flows.settings import StorySettings
    from transforms.fingerprints import fingerprint
    from transforms.records import Article, BatchRows, Sighting
    from warehouse.article_rows import load_batch
    from warehouse.connection import connect

    params = StorySettings().params()  # the defaults a run fingerprints with
    words = ("harbour council budget river bridge school market railway festival museum hospital library "
             "election weather orchestra stadium airport factory garden theatre").split()
    tag = uuid.uuid4().hex[:8]
    run_id = f"bench-writer-{writer}-{tag}"
    batches = []
    for c in range(commits):
        now = datetime.now(timezone.utc)
        articles, sightings = [], []
        for a in range(per_commit):
            n = (writer * 1_000_003 + c * 1009 + a * 7919)
            body = " ".join(words[(n + i * i) % len(words)] for i in range(200)) + f" [{tag} {writer} {c} {a}]"
            url = f"http://127.0.0.1/bench/{tag}/w{writer}/c{c}/a{a}"
            article_id = hashlib.md5(url.encode()).hexdigest()[:20]
            articles.append(Article(
                article_id=article_id, url=url, source=f"bench-{writer}", title=f"Article {c}/{a}", author=None,
                published_at=now, published_date=now.date(), date_source="feed", date_note=None, language="en",
                body=body, body_source="page", body_note=None, word_count=len(body.split()),
                content_hash=hashlib.sha256(body.encode()).hexdigest(), first_seen_at=now, run_id=run_id,
                extractor="benchmark", fingerprint=fingerprint(body, params), story_id=article_id))
            sightings.append(Sighting(article_id=article_id, source=f"bench-{writer}", url=url, canonical_link=url,
                                      guid=None, seen_at=now, run_id=run_id))
        batches.append((articles, sightings))
    retries = failed = 0
    latencies = []
    errors: list[str] = []
    with connect(target) as con:
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.perf_counter()
        for articles, sightings in batches:
            tries = 0

            def unit() -> None:
                nonlocal tries
                tries += 1
                load_batch(con, BatchRows(articles=articles, sightings=sightings), run_id=run_id)

            t0 = time.perf_counter()
            try:
                retrying(unit)
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # counted and shown: a commit that failed for good
                failed += 1
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            retries += tries - 1
        seconds = time.perf_counter() - started
    print(json.dumps(dict(ok=len(latencies), failed=failed, retries=retries, seconds=seconds,
                          latencies=latencies, errors=errors[:3])), flush=True)


# -- the benchmark -------------------------------------------------------------------------------------


@dataclass
class Bench:
    tmp: Path
    env: dict[str, str]
    server: object
    postgres: object
    cli: list[str]
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # (figure, file, lake)
    served: dict[tuple[int, int], Path] = field(default_factory=dict)

    def sources(self, variant: int, pages: int) -> Path:
        """A sources file for `pages` pages of variant `variant` of the real
        pages (new URLs and bodies per variant), served once and reused, so
        the file and the lake get the very same feeds."""
        key = (variant, pages)
        if key not in self.served:
            corpus = build_corpus(ORIGINALS * (variant + 1))[ORIGINALS * variant:ORIGINALS * variant + pages]
            path = write_sources(self.tmp / f"v{variant}-{pages}.toml", serve(self.server, corpus, f"v{variant}"), 2)
            with path.open("a", encoding="utf-8") as f:
                # A lake's archive would go under the working directory: both go here.
                f.write(f'\n[archive]\ndir = "{self.tmp / "warc"}"\n')
            self.served[key] = path
        return self.served[key]

    def new_lake(self, name: str) -> tuple[str, float]:
        """A new, empty lake (its own PostgreSQL database and data folder), and
        the seconds making it took (schema in PostgreSQL, DuckLake's catalog)."""
        from warehouse.lake import connect_lake
        from warehouse.target import parse_target

        dsn = self.postgres.create_database(f"{name}_{uuid.uuid4().hex[:6]}".lower())
        target = f"ducklake:postgres:{dsn}"
        started = time.perf_counter()
        with connect_lake(parse_target(target, self.tmp / f"{name}-lake-data")):
            pass
        return target, time.perf_counter() - started

    def ingest(self, sources: Path, db: str | Path) -> tuple[float, int]:
        wall, peak, _ = run_measured([*self.cli, "ingest", "--quiet", "--sources", str(sources), "--db", str(db)],
                                     self.env)
        return wall, peak

    def command(self, *args: str) -> float:
        wall, _, _ = run_measured([*self.cli, *args], self.env)
        return wall


def query(db: str | Path, sql: str) -> list[tuple]:
    """Read-only, through newsdesk's own connection (a file or a lake)."""
    from warehouse.connection import connect

    with connect(db, read_only=True) as con:
        return con.execute(sql).fetchall()


RUN_COLUMNS = "articles_new, epoch(finished_at - started_at), fetch_s, parse_s, extract_s, dedupe_s, load_s"


def last_runs(db: str | Path, n: int) -> list[tuple]:
    """(new, flow wall, fetch, parse, extract, dedupe, load) of the last n
    runs newsdesk made (not the replicas scale.py's growth wrote)."""
    rows = query(db, f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id NOT LIKE 'replica-%' "
                     f"ORDER BY started_at DESC LIMIT {n}")
    return [tuple(round(float(v), 2) if v is not None else None for v in r) for r in reversed(rows)]


def _stages(row: tuple) -> str:
    new, wall, fetch, parse, extract, dedupe, load = row
    return (f"{new} new, flow {wall:.2f} s (fetch {fetch:.2f}, parse {parse:.2f}, extract {extract:.2f}, "
            f"dedupe {dedupe:.2f}, load {load:.2f})")


def open_cost(db: str | Path, n: int = 5) -> float:
    from warehouse.connection import connect

    times = []
    for _ in range(n):
        started = time.perf_counter()
        with connect(db):
            pass
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cold(b: Bench) -> Path:
    print("\n== 1. cold run: 120 real pages into an empty file and an empty lake", flush=True)
    sources = b.sources(0, ORIGINALS)
    file_db = b.tmp / "cold.duckdb"
    lake_db, made = b.new_lake("cold")
    print(f"  new lake made in {made:.2f} s", flush=True)
    result = {}
    for kind, db in (("file", file_db), ("lake", lake_db)):
        wall, peak = b.ingest(sources, db)
        (row,) = last_runs(db, 1)
        articles = query(db, "SELECT count(*) FROM articles")[0][0]
        result[kind] = (wall, row)
        print(f"  {kind}: {wall:.1f} s process wall, {ORIGINALS / wall:.1f} pages/s, peak RSS {peak / 1e6:.0f} MB; "
              f"{_stages(row)}; {articles} articles", flush=True)
    (fw, frow), (lw, lrow) = result["file"], result["lake"]
    # A run opens the warehouse about ten times (registering feeds, the run's
    # row, polls, outbox, the writer, the index, the finish): what one open costs.
    opens = {kind: open_cost(db) for kind, db in (("file", file_db), ("lake", lake_db))}
    print(f"  one writable open + close, median of 5: file {opens['file']:.0f} ms, lake {opens['lake']:.0f} ms",
          flush=True)
    b.figures += [
        ("cold run, 120 pages: process wall s", f"{fw:.1f}", f"{lw:.1f}"),
        ("cold run, 120 pages: pages/s (process)", f"{ORIGINALS / fw:.1f}", f"{ORIGINALS / lw:.1f}"),
        ("cold run, 120 pages: pages/s (flow run)", f"{ORIGINALS / frow[1]:.1f}", f"{ORIGINALS / lrow[1]:.1f}"),
        ("cold run: load s (all batches) / dedupe s", f"{frow[6]:.2f} / {frow[5]:.2f}", f"{lrow[6]:.2f} / {lrow[5]:.2f}"),
        ("new lake made (schema, catalog) s", "", f"{made:.2f}"),
        ("one writable open + close of the warehouse, ms (median of 5)", f"{opens['file']:.0f}",
         f"{opens['lake']:.0f}"),
    ]
    return file_db


# -- profiling a lake run -------------------------------------------------------------------------------


def _pg_log(b: Bench) -> Path:
    return b.postgres.root / "server.log"


def _pg_set(b: Bench, duration_ms: int) -> None:
    import psycopg

    with psycopg.connect(b.postgres.dsn(), autocommit=True) as pg:
        pg.execute(f"ALTER SYSTEM SET log_min_duration_statement = {duration_ms}")
        pg.execute("SELECT pg_reload_conf()")


# Simple-protocol statements and extended-protocol executes (their parse
# and bind steps ride the same round trip, and are not counted again).
_DURATION = re.compile(r"LOG:\s+duration: ([0-9.]+) ms\s+(?:statement|execute [^:]*):\s*(.*)")


def pg_statements(log_text: str) -> list[tuple[str, int, float]]:
    """(statement shape, count, total ms) from PostgreSQL's duration lines,
    literals folded so that one statement with different values is one."""
    totals: dict[str, list[float]] = {}
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        m = _DURATION.search(line)
        if not m:
            continue
        text = m.group(2).strip()
        if not text:  # the statement starts on the next line (SQL written from a newline)
            text = next((x.strip() for x in lines[i + 1:i + 4] if x.strip()), "")
        shape = re.sub(r"'[^']*'", "?", text)
        shape = re.sub(r"\b\d+\b", "N", shape)
        shape = re.sub(r"\s+", " ", shape)[:150]
        t = totals.setdefault(shape, [0, 0.0])
        t[0] += 1
        t[1] += float(m.group(1))
    return sorted(((s, int(c), ms) for s, (c, ms) in totals.items()), key=lambda x: -x[2])


def profile(b: Bench, label: str, db: str, sources: Path) -> dict:
    """One more 40-article run on the lake with PostgreSQL logging every
    statement's duration: the run's stages and where PostgreSQL's time went."""
    log = _pg_log(b)
    _pg_set(b, 0)
    start = log.stat().st_size
    try:
        wall, _ = b.ingest(sources, db)
    finally:
        _pg_set(b, -1)
    with log.open("r", errors="replace") as f:
        f.seek(start)
        text = f.read()
    statements = pg_statements(text)
    (row,) = last_runs(db, 1)
    total_ms = sum(ms for _, _, ms in statements)
    print(f"  [profile {label}] {wall:.1f} s process wall; {_stages(row)}; PostgreSQL: "
          f"{sum(c for _, c, _ in statements)} statements, {total_ms / 1000:.2f} s in the server; the top 12:",
          flush=True)
    for shape, n, ms in statements[:12]:
        print(f"      {ms:8.0f} ms {n:6d}x  {shape}", flush=True)
    return dict(wall=wall, row=row, statements=statements, total_ms=total_ms)


# -- 2. the 40-article run at empty and at each size ---------------------------------------------------


def band_lookup_cost(lake_db: str) -> tuple[float, float, int]:
    """ms to look up 2,000 stored band keys in the lake's story_bands the way
    a run does (warehouse.lookups.lookup through DuckDB's postgres scanner),
    then the same with the scanner's ctid-range split turned off; and the
    table's pages. The scanner splits a scan into one query per
    pg_pages_per_task pages (1,000), each a TID range scan that filters
    its pages: PostgreSQL's index on band_key is not used."""
    import psycopg

    from warehouse.connection import connect
    from warehouse.lookups import lookup
    from warehouse.target import parse_target

    # As autovacuum leaves it a minute after a large load (the runs above
    # came later than that); right after `migrate` the table has no
    # statistics yet, and the scanner then reads it as one task.
    with psycopg.connect(parse_target(lake_db).dsn, autocommit=True) as pg:
        pg.execute("ANALYZE newsdesk.story_bands")
    select = "SELECT band_key, story_id, first_seen_at FROM keys.newsdesk.story_bands"
    with connect(lake_db, read_only=True) as con:
        keys = [k for k, in con.execute("SELECT band_key FROM keys.newsdesk.story_bands "
                                        "USING SAMPLE 2000 ROWS").fetchall()]
        pages = con.execute("SELECT relpages FROM postgres_query('keys', "
                            "'SELECT relpages FROM pg_class WHERE oid = ''newsdesk.story_bands''::regclass')"
                            ).fetchone()[0]
        times = []
        for setting in ("RESET pg_use_ctid_scan", "SET pg_use_ctid_scan = false"):
            con.execute(setting)
            started = time.perf_counter()
            lookup(con, select, "band_key", keys)
            times.append((time.perf_counter() - started) * 1000)
    return times[0], times[1], int(pages)


def scale(b: Bench, sizes: list[int], runs: int, template: Path | None, want_profile: bool) -> tuple[Path, str]:
    print("\n== 2. the 40-article run, file vs lake, at empty and at " + ", ".join(f"{s:,}" for s in sizes), flush=True)
    results: dict[str, dict[str, list]] = {}
    variant = 1

    def measure(label: str, file_db: Path, lake_db: str) -> None:
        nonlocal variant
        walls: dict[str, list[float]] = {"file": [], "lake": []}
        for _ in range(runs):
            sources = b.sources(variant, PER_RUN)
            variant += 1
            for kind, db in (("file", file_db), ("lake", lake_db)):  # alternating: the same minutes for both
                wall, peak = b.ingest(sources, db)
                walls[kind].append(wall)
                print(f"  [{label} {kind}] run: {wall:.1f} s, peak RSS {peak / 1e6:.0f} MB", flush=True)
        for kind, db in (("file", file_db), ("lake", lake_db)):
            rows = last_runs(db, runs)
            articles = query(db, "SELECT count(*) FROM articles")[0][0]
            print(f"  [{label} {kind}] {articles:,} articles; " + "; ".join(_stages(r) for r in rows), flush=True)
            results.setdefault(label, {})[kind] = [walls[kind], rows, articles]

    empty_file = b.tmp / "empty.duckdb"
    empty_lake, _ = b.new_lake("empty")
    measure("empty", empty_file, empty_lake)

    if template is None:
        template = b.tmp / "template.duckdb"
        b.ingest(b.sources(0, ORIGINALS), template)
    template_run = count(template, "SELECT run_id FROM runs")[0][0]
    grown = b.tmp / "scale.duckdb"
    shutil.copy(template, grown)
    lake_db = empty_lake
    prep: dict[str, dict[str, float]] = {}
    for size in sizes:
        label = f"{size // 1000}k"
        seconds = grow(grown, size, max(sizes), template_run)
        file_reindex = b.command("reindex", "--db", str(grown))
        lake_db, _ = b.new_lake(f"lake{label}")
        data = b.tmp / f"lake{label}-lake-data"
        migrate_s = b.command("migrate", "--to", lake_db, "--data-path", str(data), "--db", str(grown))
        lake_reindex = b.command("reindex", "--db", lake_db)
        prep[label] = dict(grow=seconds, migrate=migrate_s, file_reindex=file_reindex, lake_reindex=lake_reindex)
        print(f"  grew the file to {count(grown, 'SELECT count(*) FROM articles')[0][0]:,} articles in {seconds:.0f} s; "
              f"reindex {file_reindex:.1f} s; migrate --to a new lake {migrate_s:.1f} s (file {_size(grown) / 1e6:.0f} MB, "
              f"lake data {_size(data) / 1e6:.0f} MB); lake reindex {lake_reindex:.1f} s", flush=True)
        measure(label, grown, lake_db)
        as_read, no_ctid, pages = band_lookup_cost(lake_db)
        print(f"  [{label} lake] 2,000 band keys looked up in story_bands ({pages:,} pages): {as_read:.0f} ms as "
              f"newsdesk reads them, {no_ctid:.0f} ms with pg_use_ctid_scan = false", flush=True)
        b.figures.append((f"{label}: lookup of 2,000 band keys in story_bands, ms (pg_use_ctid_scan = false)", "",
                          f"{as_read:.0f} ({no_ctid:.0f})"))
        b.figures.append((f"{label}: migrate --to a lake, s", "", f"{migrate_s:.1f}"))
        b.figures.append((f"{label}: reindex s", f"{file_reindex:.1f}", f"{lake_reindex:.1f}"))

    base = results["empty"]
    worst_ratio = 0.0
    for label, by_kind in results.items():
        for what, pick in (("process wall", lambda r: r[0]), ("flow run", lambda r: [row[1] for row in r[1]])):
            cells = []
            for kind in ("file", "lake"):
                values = pick(by_kind[kind])
                cell = " / ".join(f"{v:.1f}" for v in values)
                if label != "empty":
                    ratio = statistics.median(values) / statistics.median(pick(base[kind]))
                    cell += f" ({ratio:.2f}x empty)"
                    if kind == "lake" and what == "process wall":
                        worst_ratio = max(worst_ratio, ratio)
                cells.append(cell)
            b.figures.append((f"40-article run at {label} ({by_kind['file'][2]:,} articles after): {what} s",
                              *cells))
        cells = []
        for kind in ("file", "lake"):
            rows = by_kind[kind][1]
            cells.append(" / ".join(f"{r[6]:.2f}" for r in rows) + " ; " + " / ".join(f"{r[5]:.2f}" for r in rows))
        b.figures.append((f"40-article run at {label}: load s ; dedupe s", *cells))
    if want_profile or worst_ratio > 1.5:
        print(f"\n  profiling (lake ratio {worst_ratio:.2f}x):", flush=True)
        sources = b.sources(variant, PER_RUN)
        variant += 1
        for label, db in [("empty", empty_lake)] + ([(f"{sizes[-1] // 1000}k", lake_db)] if sizes else []):
            profile(b, label, db, sources)
    return (grown if sizes else empty_file), lake_db


# -- 3. a reader beside a run ------------------------------------------------------------------------------


def readers(b: Bench, file_db: Path, lake_db: str, pages: int) -> None:
    print(f"\n== 3. a reader beside a run of {pages} new pages", flush=True)
    variant = 900  # far from the variants step 2 used
    got: dict[str, tuple[str, str]] = {}
    for kind, db in (("file", file_db), ("lake", lake_db)):
        sources = b.sources(variant, pages)
        stop = b.tmp / f"stop-{kind}"
        stop.unlink(missing_ok=True)
        reader = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_reader", kind, str(db), str(stop)],
                                  env={**b.env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True, cwd=b.tmp)
        assert reader.stdout.readline().strip() == "ready", "the reader did not start"
        time.sleep(1.0)  # a second of the reader alone, before the run
        run_started = time.time()
        wall, _ = b.ingest(sources, db)
        run_ended = time.time()
        time.sleep(1.0)
        stop.touch()
        samples = json.loads(reader.stdout.readline())
        reader.wait(timeout=60)
        during = [s for s in samples if run_started <= s[0] <= run_ended]
        ok = [s for s in during if s[3] is None]
        failed = [s for s in during if s[3] is not None]
        lat = sorted(s[1] * 1000 for s in ok)
        # The longest stretch of the run in which no reader query got an answer.
        answered = [run_started] + [s[0] + s[1] for s in ok] + [run_ended]
        longest_wait = max(b2 - a for a, b2 in zip(answered, answered[1:]))
        kinds: dict[str, int] = {}
        for s in failed:
            what = re.sub(r'"[^"]*"|\d+', "…", s[3])[:120]
            kinds[what] = kinds.get(what, 0) + 1
        counts = [s[2] for s in ok]
        (row,) = last_runs(db, 1)
        if lat:
            print(f"  {kind}: run {wall:.1f} s ({_stages(row)}); reader during it: {len(during)} queries, {len(ok)} answered "
                  f"(latency min {lat[0]:.0f} / median {statistics.median(lat):.0f} / max {lat[-1]:.0f} ms), "
                  f"{len(failed)} failed; longest time without an answer {longest_wait:.1f} s; articles seen "
                  f"{min(counts):,} → {max(counts):,}", flush=True)
        else:
            print(f"  {kind}: run {wall:.1f} s; reader during it: {len(during)} queries, none answered", flush=True)
        for what, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"      {n}x {what}", flush=True)
        got[kind] = (
            f"{len(ok)}/{len(during)} answered" + (f", {len(failed)} failed" if failed else ", none failed")
            + (f"; {lat[0]:.0f} / {statistics.median(lat):.0f} / {lat[-1]:.0f} ms" if lat else "")
            + f"; longest without an answer {longest_wait:.1f} s", f"{wall:.1f}")
    b.figures.append((f"reader beside a {pages}-page run: queries answered; min / median / max ms",
                      got["file"][0], got["lake"][0]))
    b.figures.append((f"the {pages}-page run with that reader beside it: process wall s", got["file"][1],
                      got["lake"][1]))


# -- 4. several writers of one lake ------------------------------------------------------------------------------


def writers(b: Bench, counts: list[int], commits: int, per_commit: int, delay_s: float) -> None:
    from tests.latency_proxy import LatencyProxy

    print(f"\n== 4. commits/s of {', '.join(map(str, counts))} writers to one lake, {commits} commits of "
          f"{per_commit} articles each, direct and behind a {delay_s * 1000:.0f} ms proxy", flush=True)
    proxy = LatencyProxy(b.postgres.port, delay_s=delay_s)
    try:
        for delayed in (False, True):
            for n in counts:
                lake, _ = b.new_lake(f"writers{n}{'slow' if delayed else ''}")
                target = lake.replace(f"port={b.postgres.port}", f"port={proxy.port}") if delayed else lake
                procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_writer", target, str(w),
                                           str(commits), str(per_commit)],
                                          env={**b.env, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True, cwd=b.tmp) for w in range(n)]
                for p in procs:
                    if p.stdout.readline().strip() != "ready":
                        raise SystemExit(f"a writer did not start (exit {p.wait()})")
                started = time.perf_counter()
                for p in procs:
                    p.stdin.write("go\n")
                    p.stdin.flush()
                outs = []
                for p in procs:
                    line = p.stdout.readline()
                    if not line:
                        raise SystemExit(f"a writer died (exit {p.wait()})")
                    outs.append(json.loads(line))
                wall = time.perf_counter() - started
                for p in procs:
                    p.wait(timeout=60)
                ok = sum(o["ok"] for o in outs)
                failed = sum(o["failed"] for o in outs)
                retries = sum(o["retries"] for o in outs)
                lat = sorted(x * 1000 for o in outs for x in o["latencies"])
                stored, staged = query(lake, "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM staged_loads)")[0]
                where = f"behind {delay_s * 1000:.0f} ms" if delayed else "direct"
                print(f"  {n} writer(s), {where}: {ok} commits in {wall:.1f} s = {ok / wall:.1f} commits/s; "
                      f"per commit median {statistics.median(lat):.0f} ms, max {lat[-1]:.0f} ms; {retries} retries, "
                      f"{failed} failed for good; {stored} articles stored of {ok * per_commit} committed, "
                      f"{staged} left staged", flush=True)
                for o in outs:
                    for e in o["errors"]:
                        print(f"      {e}", flush=True)
                b.figures.append((f"{n} writer(s) to one lake, {where}: commits/s; median / max ms a commit; retries",
                                  "", f"{ok / wall:.1f}; {statistics.median(lat):.0f} / {lat[-1]:.0f} ms; "
                                      f"{retries} retries" + (f", {failed} FAILED" if failed else "")
                                      + ("" if stored == ok * per_commit and not staged else
                                         f"; {stored} stored of {ok * per_commit}, {staged} staged")))
        # What one commit asks of PostgreSQL: a few more, logged, from one writer.
        lake, _ = b.new_lake("writerslog")
        log = _pg_log(b)
        _pg_set(b, 0)
        try:
            logged = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_writer", lake, "0", "5",
                                       str(per_commit)], env={**b.env, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, cwd=b.tmp)
            if logged.stdout.readline().strip() != "ready":
                raise SystemExit(f"the logged writer did not start (exit {logged.wait()})")
            time.sleep(0.5)  # the connect's own statements are in the log by now
            start = log.stat().st_size
            logged.stdin.write("go\n")
            logged.stdin.flush()
            json.loads(logged.stdout.readline())
            logged.wait(timeout=60)
        finally:
            _pg_set(b, -1)
        with log.open("r", errors="replace") as f:
            f.seek(start)
            statements = pg_statements(f.read())
        total = sum(n for _, n, _ in statements)
        print(f"  PostgreSQL statements (logged) for 5 commits of one writer: {total} ({total / 5:.0f} a commit), "
              f"{sum(ms for _, _, ms in statements):.0f} ms in the server; the top 10 by count:", flush=True)
        for shape, n, ms in sorted(statements, key=lambda x: -x[1])[:10]:
            print(f"      {n:6d}x {ms:8.0f} ms  {shape}", flush=True)
        b.figures.append(("PostgreSQL statements a commit (one writer, logged)", "", f"{total / 5:.0f}"))
    finally:
        proxy.stop()


# -- main -------------------------------------------------------------------------------------------------------


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description="newsdesk: the DuckDB file against the lake, on the same corpus")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000], help="grown warehouse sizes (articles)")
    parser.add_argument("--runs", type=int, default=2, help="40-article runs measured per warehouse and size")
    parser.add_argument("--reader-pages", type=int, default=PER_RUN, help="pages of the run the reader watches")
    parser.add_argument("--writers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--commits", type=int, default=10, help="commits per writer")
    parser.add_argument("--articles", type=int, default=5, help="articles per commit")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="the proxy's delay, each way")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temp dir)")
    parser.add_argument("--profile", action="store_true",
                        help="profile a lake run at empty and at the largest size even if the ratio is within 1.5x")
    for step in ("cold", "scale", "readers", "writers"):
        parser.add_argument(f"--skip-{step}", action="store_true")
    args = parser.parse_args()

    from tests.httpserver import LocalServer
    from tests.postgres import PostgresServer

    tmp = args.dir or Path(tempfile.mkdtemp(prefix="newsdesk-lakebench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    begun = time.perf_counter()
    print(f"{os.cpu_count()} CPUs, load average {_load()} at the start; work directory {tmp}", flush=True)
    postgres = PostgresServer()
    server = LocalServer()
    server.__enter__()
    prefect = None
    try:
        prefect, _api, env = start_prefect(tmp / "prefect-home", wait_s=600)
        # A lake's search index is per machine, under this folder (not the user's home).
        env = {**env, "NEWSDESK_SEARCH_DIR": str(tmp / "search")}
        b = Bench(tmp=tmp, env=env, server=server, postgres=postgres,
                  cli=[str(Path(sys.executable).parent / "newsdesk")])
        # Prefect's first flow run creates the flow, and the first lake run loads
        # the extensions from disk: both before anything is timed.
        warm = b.sources(999, 10)
        b.ingest(warm, tmp / "warm.duckdb")
        b.ingest(warm, b.new_lake("warm")[0])
        template = None if args.skip_cold else cold(b)
        file_db, lake_db = tmp / "empty.duckdb", None
        if not args.skip_scale:
            file_db, lake_db = scale(b, sorted(args.sizes), args.runs, template, args.profile)
        if not args.skip_readers:
            if lake_db is None:  # step 2 skipped: empty warehouses with one run each
                lake_db = b.new_lake("readers")[0]
                b.ingest(b.sources(1, PER_RUN), file_db)
                b.ingest(b.sources(1, PER_RUN), lake_db)
            readers(b, file_db, lake_db, args.reader_pages)
        if not args.skip_writers:
            writers(b, args.writers, args.commits, args.articles, args.delay_ms / 1000)
    finally:
        if prefect is not None:
            prefect.terminate()
            prefect.wait(timeout=30)
        server.__exit__(None, None, None)
        postgres.stop()

    print(f"\n{os.cpu_count()} CPUs, load average {_load()} at the end; {time.perf_counter() - begun:.0f} s in all\n")
    print("| figure | file | lake |")
    print("|---|---|---|")
    for figure, file_cell, lake_cell in b.figures:
        print(f"| {figure} | {file_cell} | {lake_cell} |")
    print(f"\n(work directory {tmp})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_reader":
        reader_child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_writer":
        writer_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
