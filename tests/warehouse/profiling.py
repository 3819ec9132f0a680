"""How much of each table a piece of warehouse code reads, from DuckDB's own
profiler: the rows each table scan (sequential or index) produced from storage."""

import json


def rows_scanned(con, run) -> dict[str, int]:
    """Rows each table scan read while `run` ran (DuckDB's profiler)."""
    out = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    path = f"{out}/profile.json"
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute("PRAGMA custom_profiling_settings = '{\"OPERATOR_ROWS_SCANNED\": \"true\", "
                "\"EXTRA_INFO\": \"true\"}'")
    con.execute(f"SET profiling_output = '{path}'")
    try:
        run()
    finally:
        con.execute("PRAGMA disable_profiling")
    scanned: dict[str, int] = {}

    def walk(node):
        table = (node.get("extra_info") or {}).get("Table", "").rpartition(".")[2]  # db.main.table
        if table:
            scanned[table] = scanned.get(table, 0) + node.get("operator_rows_scanned", 0)
        for child in node.get("children", []):
            walk(child)

    with open(path) as f:
        walk(json.load(f))
    return scanned
