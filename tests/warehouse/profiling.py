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


class Profiled:
    """A connection that profiles every statement run through it and sums
    the rows each table's scans read (`rows_scanned` sees one statement:
    DuckDB's profile file holds the last one only). Pass it where warehouse
    code takes a connection; only `execute` is intercepted."""

    def __init__(self, con):
        self._con = con
        self.scanned: dict[str, int] = {}

    def execute(self, *args, **kwargs):
        result = None

        def run():
            nonlocal result
            result = self._con.execute(*args, **kwargs)
            # Fetched here: the profile is written once the statement is done.
            description = result.description
            result = _Fetched(result.fetchall() if description else None, description)

        for table, rows in rows_scanned(self._con, run).items():
            self.scanned[table] = self.scanned.get(table, 0) + rows
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


class _Fetched:
    def __init__(self, rows, description):
        self._rows = rows
        self.description = description

    def fetchall(self):
        return self._rows

    def fetchone(self):
        return self._rows[0] if self._rows else None
