"""A user's ad hoc SQL (`newsdesk sql`): which statements run, and within
what bounds.

The gate decides from what DuckDB will execute, not from the first keyword:
`EXPLAIN ANALYZE <statement>` executes <statement>, so an EXPLAIN runs only
when the statement it explains is itself a query. The sandboxed connection
(`warehouse.connection.connect_sandboxed`) is the second wall: read-only
file, no external access but reading the allowed directories, configuration
locked. Neither wall alone is trusted to hold.

Results are bounded in time (DuckDB has no statement timeout, so a timer
interrupts the connection) and in size (rows and bytes held), each with an
error that names the option that raises it.
"""

from __future__ import annotations

import re
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from transforms.errors import InputError
from warehouse.scopes import registered

# Statement types that only read. DESCRIBE, SHOW, SUMMARIZE, PRAGMA
# table_info, VALUES and `FROM t` parse as SELECT; EXPLAIN is admitted only
# around one of these (see `_explained`).
_QUERY = duckdb.StatementType.SELECT
_EXPLAIN = duckdb.StatementType.EXPLAIN
_WORD = re.compile(r"\w+")
_CHAR = re.compile(r".", re.DOTALL)


class QueryError(InputError):
    """A user's SQL failed (syntax, unknown column, write on a read-only file)."""


class QueryTimeout(QueryError):
    """The statement ran past its time limit and was interrupted."""


class ResultTooLarge(QueryError):
    """The result grew past the rows or bytes a command will hold."""


@dataclass(frozen=True)
class Limits:
    """How long a statement may run and how much of its result is held."""
    timeout_s: float = 300.0
    max_rows: int = 1_000_000
    max_bytes: int = 256 * 1024 * 1024


def _tokens(sql: str) -> tuple[list[tuple[str, Any]], list[int]]:
    """DuckDB's own tokens (comments dropped), each with its text, and their offsets."""
    found = duckdb.tokenize(sql)
    # A token's text runs from its offset: a word, or one character of an
    # operator (a comment may follow it before the next token).
    texts = []
    for offset, _ in found:
        match = _WORD.match(sql, offset) or _CHAR.match(sql, offset)
        assert match is not None  # _CHAR takes any character, and every token starts at one
        texts.append(match.group())
    return list(zip(texts, (kind for _, kind in found))), [offset for offset, _ in found]


def _explained(sql: str) -> str:
    """The statement an EXPLAIN statement explains (and, under ANALYZE,
    executes): what follows `EXPLAIN`, `EXPLAIN ANALYZE` or `EXPLAIN (options)`.
    Anything of another shape is refused rather than guessed at."""
    tokens, offsets = _tokens(sql)
    words = [text.upper() for text, _ in tokens]
    if not words or words[0] != "EXPLAIN":
        raise QueryError("cannot tell which statement this EXPLAIN runs; refused")
    i = 1
    if i < len(words) and words[i] in ("ANALYZE", "ANALYSE"):
        i += 1
    elif i < len(words) and words[i].startswith("("):
        depth = 0
        while i < len(words):
            if tokens[i][1] == duckdb.token_type.operator:
                depth += {"(": 1, ")": -1}.get(words[i], 0)
            i += 1
            if depth <= 0:
                break
        if depth != 0:
            raise QueryError("cannot tell which statement this EXPLAIN runs; refused")
    if i >= len(words):
        raise QueryError("EXPLAIN of nothing")
    return sql[offsets[i]:]


# Table functions that are queries by their shape but change the
# connection (logging or profiling to a file, a checkpoint): the locked
# configuration does not stop them, so the gate does.
_FORBIDDEN_FUNCTIONS = {"enable_logging", "disable_logging", "truncate_duckdb_logs", "enable_profiling",
                        "disable_profiling", "checkpoint", "force_checkpoint"}


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse, with a message, anything but exactly one query or the plan of
    one query."""
    try:
        named = {text.lower() for text, kind in _tokens(sql)[0] if kind != duckdb.token_type.string_const}
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    if named & _FORBIDDEN_FUNCTIONS:
        raise QueryError(f"{', '.join(sorted(named & _FORBIDDEN_FUNCTIONS))} changes the connection: not allowed here")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    if not statements:
        raise QueryError("no SQL statement given")
    if len(statements) > 1:
        raise QueryError(f"{len(statements)} statements given; run one statement per call")
    kind = statements[0].type
    if kind == _EXPLAIN:
        inner = _explained(statements[0].query)
        try:
            explained = con.extract_statements(inner)
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        if len(explained) != 1 or explained[0].type != _QUERY:
            what = explained[0].type.name if len(explained) == 1 else f"{len(explained)} statements"
            raise QueryError(f"EXPLAIN runs only on a query (SELECT ...), not on {what}: EXPLAIN ANALYZE "
                             "executes the statement it explains")
    elif kind != _QUERY:
        raise QueryError(f"only read-only queries (SELECT, EXPLAIN SELECT ...) are allowed, not {kind.name}")


def _held_bytes(rows: list[tuple[Any, ...]]) -> int:
    # What the rows hold, near enough: the values' own sizes (strings and
    # blobs dominate), not the tuples around them.
    return sum(sys.getsizeof(v) for row in rows for v in row)


def run_user_sql(con: duckdb.DuckDBPyConnection, sql: str, tables: dict[str, dict[str, list[Any]]] | None = None,
                 limits: Limits = Limits()) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A user's ad hoc SQL, checked by `check_read_only`, interrupted after
    `limits.timeout_s`, its result refused past `limits.max_rows` rows or
    `limits.max_bytes`. `tables` are columns made visible to the statement
    under their names (search hits)."""
    check_read_only(con, sql)
    timer = threading.Timer(limits.timeout_s, con.interrupt)
    timer.daemon = True
    with ExitStack() as scopes:
        for name, table in (tables or {}).items():
            scopes.enter_context(registered(con, name, pa.table(table)))
        timer.start()
        try:
            cur = con.execute(sql)
            if cur.description is None:
                return [], []  # type: ignore[unreachable]  # duckdb's stubs leave out the None of a result-less cursor
            columns = [d[0] for d in cur.description]
            rows: list[tuple[Any, ...]] = []
            held = 0
            # Few rows at a time at first: one row may be huge, and the size
            # is checked between fetches.
            size = 16
            while chunk := cur.fetchmany(size):
                size = min(size * 2, 10_000)
                rows.extend(chunk)
                held += _held_bytes(chunk)
                if len(rows) > limits.max_rows:
                    raise ResultTooLarge(f"the result has more than {limits.max_rows:,} rows; add a LIMIT, "
                                         "raise --max-rows, or use `newsdesk export` for the whole archive")
                if held > limits.max_bytes:
                    raise ResultTooLarge(f"the result holds more than {limits.max_bytes // 2**20:,} MB; select "
                                         "fewer columns or rows, raise --max-mb, or use `newsdesk export`")
            return columns, rows
        except duckdb.InterruptException:
            raise QueryTimeout(f"the query ran past its time limit of {limits.timeout_s:g} s and was stopped; "
                               "raise --timeout to give it longer") from None
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        finally:
            timer.cancel()

