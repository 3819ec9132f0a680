"""The story window in a real DuckDB file: band keys stored in first-seen
order, and a candidate lookup that reads the window's row groups only."""

import random
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa

from flows.settings import StorySettings
from tests.warehouse.profiling import rows_scanned
from transforms.stories import candidate_window
from warehouse import story_rows
from warehouse.connection import ROW_GROUP_SIZE, connect
from warehouse.schema import MIGRATIONS, migrate

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
P = StorySettings().params()


def test_migration_9_gives_band_keys_their_roots_first_sighting_in_time_order(tmp_path):
    db = tmp_path / "v8.duckdb"
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description VARCHAR NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL)")
    for version, description, ddl in MIGRATIONS[:8]:
        con.execute(ddl)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, description])
    seen = {f"root{i}": NOW - timedelta(days=i) for i in range(5)}  # root0 is the newest
    for article_id, at in seen.items():
        con.execute("INSERT INTO articles (article_id, url, source, published_at, published_date, date_source, body,"
                    " body_source, word_count, content_hash, first_seen_at, run_id, extractor, story_id)"
                    " VALUES (?, ?, 'f', ?, ?, 'feed', 'text', 'page', 1, ?, ?, 'r', 'x', ?)",
                    [article_id, f"https://x.example/{article_id}", at, at.date(), article_id, at, article_id])
    # Inserted newest first: the migration must put them in time order.
    con.execute("INSERT INTO story_bands SELECT k * 10 + i, 'root' || i FROM range(5) a(i), range(3) b(k)")
    con.close()

    with connect(db) as con:  # connect() migrates
        rows = con.execute("SELECT band_key, story_id, first_seen_at FROM story_bands ORDER BY rowid").fetchall()
        assert con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] >= 9
        assert migrate(con) >= 9  # and again is a no-op
    assert len(rows) == 15
    assert all(first_seen == seen[story] for _, story, first_seen in rows)
    assert [first_seen for _, _, first_seen in rows] == sorted(first_seen for _, _, first_seen in rows)
    assert rows[0][1] == "root4" and rows[-1][1] == "root0"


ROOTS = 10_000


def _band_history(db, rng: random.Random, ids: list[str]) -> tuple[pa.Table, list[datetime]]:
    """100 days of roots (one per id) with 42 random band keys each, stored in
    first-seen order as runs append them, and checkpointed."""
    start = NOW - timedelta(days=100)
    first_seen = [start + timedelta(days=100 * i / len(ids)) for i in range(len(ids))]
    bands = pa.table({
        "band_key": pa.array([rng.randrange(-2**62, 2**62) for _ in range(len(ids) * P.bands)], pa.int64()),
        "story_id": [story for story in ids for _ in range(P.bands)],
        "first_seen_at": pa.array([t for t in first_seen for _ in range(P.bands)], pa.timestamp("us", tz="UTC")),
    })
    with connect(db) as con:
        con.register("_b", bands)
        con.execute("INSERT INTO story_bands SELECT * FROM _b")
        con.unregister("_b")
        con.execute("CHECKPOINT")
    return bands, first_seen


def test_the_candidate_lookup_reads_the_window_not_the_history(tmp_path):
    # 100 days of roots, appended in first-seen order as runs append them:
    # 10,000 roots × 42 band keys in row groups of ROW_GROUP_SIZE, of which the
    # last 30 days (+ the window's 30 days ahead, empty) are about a third.
    rng = random.Random(7)
    roots = ROOTS
    db = tmp_path / "wh.duckdb"
    bands, _ = _band_history(db, rng, [f"root{i}" for i in range(roots)])
    # A batch's keys: 40 new articles' worth, one of them shared with a recent root.
    shared = bands["band_key"][-5].as_py()
    keys = [rng.randrange(-2**62, 2**62) for _ in range(40 * P.bands - 1)] + [shared]
    window = candidate_window([NOW], P)
    with connect(db) as con:
        con.execute(f"SET temp_directory = '{tmp_path}'")
        # Every root has its fingerprint, as in a real warehouse: against an
        # empty fingerprint table the join may stop its scan of story_bands
        # early, after however many row groups its threads had begun.
        con.execute("INSERT INTO article_fingerprints SELECT DISTINCT story_id, ?, 3, ''::BLOB FROM story_bands",
                    [P.scheme])
        found: dict[str, dict] = {}

        def lookup(name, first_seen):
            found[name] = story_rows.select_story_roots(con, keys, P.scheme, first_seen)

        everything = rows_scanned(con, lambda: lookup("everything", None))
        recent = rows_scanned(con, lambda: lookup("recent", window))
    total = roots * P.bands
    # Both find the recent root that shares a key with the batch, and only it.
    for name in ("everything", "recent"):
        assert [[r.story_id for r in rs] for rs in found[name].values()] == [[f"root{roots - 1}"]], name
    # Without a window every row group is read (the join's own min/max
    # filter on band_key skips a few vectors at the edges).
    assert everything["story_bands"] >= 0.9 * total, (everything, total)
    # The last 30 of 100 days, plus the row groups at its edges (measured:
    # 137-142k rows of 420k; the window's rows alone are 126k).
    assert recent["story_bands"] <= 0.3 * total + 2 * ROW_GROUP_SIZE, (recent, total)


def test_replacing_a_roots_band_keys_reads_its_row_groups_not_the_history(tmp_path):
    # An upgrade (or a re-extraction) gives a stored root a new fingerprint:
    # its old band keys go. Story ids are random, so a DELETE by story_id
    # alone reads every row group; the root's first sighting, carried by
    # each of its rows, bounds it to the row groups of that time.
    rng = random.Random(11)
    roots = ROOTS
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(roots)]
    db = tmp_path / "wh.duckdb"
    _, first_seen = _band_history(db, rng, ids)
    gone = [(ids[i], first_seen[i]) for i in (roots - 3, roots - 2)]
    with connect(db) as con:
        con.execute(f"SET temp_directory = '{tmp_path}'")
        scanned = rows_scanned(con, lambda: story_rows._drop_bands(con, gone))
        left = con.execute("SELECT count(*), count(DISTINCT story_id) FROM story_bands").fetchone()
        assert con.execute("SELECT count(*) FROM story_bands WHERE story_id IN (?, ?)",
                           [gone[0][0], gone[1][0]]).fetchone()[0] == 0
    assert left == ((roots - 2) * P.bands, roots - 2)
    assert scanned["story_bands"] <= 2 * ROW_GROUP_SIZE, (scanned, roots * P.bands)  # the groups of that time
