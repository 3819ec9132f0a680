"""Pure transforms: bytes and plain values in, frozen records out.

Nothing here does I/O, reads the clock or the environment, or imports Prefect,
DuckDB or an HTTP client; the import-boundary test keeps it so. Time, ids and
settings come in as arguments.
"""
