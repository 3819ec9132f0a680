"""Writers keep row groups small, so a checkpoint's rewrite of a table's
last row group stays small (warehouse.connection.ROW_GROUP_SIZE)."""

from warehouse.connection import ROW_GROUP_SIZE, connect

INSERT = """
    INSERT INTO articles (article_id, url, source, published_at, published_date, date_source, body, body_source,
                          word_count, content_hash, first_seen_at, run_id, extractor, story_id)
    SELECT md5(i::VARCHAR), 'https://x.example/' || i, 'f', TIMESTAMPTZ '2026-01-01', DATE '2026-01-01', 'feed',
           'body ' || i, 'page', 2, sha256(i::VARCHAR), TIMESTAMPTZ '2026-01-01', 'r', 'x', md5(i::VARCHAR)
    FROM range(?, ?) t(i)"""


def _row_groups(con) -> list[int]:
    return [r[0] for r in con.execute(
        "SELECT max(count) FROM pragma_storage_info('articles') WHERE column_name = 'article_id' "
        "GROUP BY row_group_id ORDER BY row_group_id").fetchall()]


def test_a_writer_appends_in_small_row_groups_and_a_run_adds_one(tmp_path):
    db = tmp_path / "wh.duckdb"
    with connect(db) as con:
        con.execute(INSERT, [0, 3 * ROW_GROUP_SIZE + 1000])
    with connect(db, read_only=True) as con:
        groups = _row_groups(con)
    assert ROW_GROUP_SIZE < 122_880  # DuckDB's default
    assert len(groups) == 4 and max(groups) == ROW_GROUP_SIZE and sum(groups) == 3 * ROW_GROUP_SIZE + 1000
    # A run's 40 articles, then the checkpoint as the writer closes: the
    # stored row groups stay as they were (none merged back, none rewritten
    # bigger), and what the checkpoint rewrote is at most one small group.
    start = 3 * ROW_GROUP_SIZE + 1000
    with connect(db) as con:
        con.execute(INSERT, [start, start + 40])
    with connect(db, read_only=True) as con:
        after = _row_groups(con)
    assert after[:3] == groups[:3] and max(after) <= ROW_GROUP_SIZE and sum(after) == start + 40
