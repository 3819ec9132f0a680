"""The one place that opens DuckDB connections.

Writers open the file only for a short unit of work and close it again: DuckDB
allows one writing process per file, and another process cannot even read it
while a writer holds it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

import duckdb

from transforms.errors import InputError, NewsdeskError, NoWarehouse
from warehouse.schema import NotAWarehouse as NotAWarehouse  # raised by connect(), imported from here
from warehouse.schema import migrate, refuse_foreign
from warehouse.target import LakeTarget, is_lake, parse_lake

# For type hints outside the warehouse, which never imports duckdb itself.
Connection = duckdb.DuckDBPyConnection

# DuckDB's own default is 80% of the machine's memory. Readers (ad hoc SQL,
# exports, search) and migrations get 1 GB; larger sorts and joins
# spill to a temp directory instead.
MEMORY_LIMIT = "1GB"
# A writer (ingest, re-extraction, reindex) touches a batch, not the history. What it
# does hold is each checkpoint's rewrite of a table's last row group: DuckDB
# 1.5 rewrites a row group with appended rows whole (every column, the
# articles' bodies too) when the table has indexes, up to 122,880 rows, and
# the rewrite takes as much memory as the limit allows (measured on a
# 100k-article warehouse: 830 MB of anonymous memory at 1 GB, 450 MB at
# 256 MB, and no slower). See docs/scale.md.
WRITER_MEMORY_LIMIT = "256MB"


def _limit(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    con.execute(f"SET memory_limit = '{limit}'")


def _writable(con: duckdb.DuckDBPyConnection) -> None:
    """Migrate (with the readers' limit: a migration may build an index over
    a whole table), then hold the connection to the writers' limit."""
    migrate(con)
    _limit(con, WRITER_MEMORY_LIMIT)


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    # Every timestamp is shown and compared in UTC, whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    # Extensions come from pinned wheels, never from the internet.
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    _limit(con, MEMORY_LIMIT)
    con.execute("SET enable_progress_bar = false")


class WarehouseBusy(NewsdeskError):
    """Another process held the DuckDB file for longer than we would wait."""


def _refuse_special(path: Path) -> None:
    """A FIFO would block the open, a device feed it anything: only a
    regular file (or nothing yet) can be a warehouse. Checked without
    opening the path."""
    if path.is_dir():
        raise NotAWarehouse(f"{path} is a directory, not a DuckDB warehouse file")
    if path.exists() and not path.is_file():
        raise NotAWarehouse(f"{path} is not a regular file (a FIFO, a device or a socket), not a DuckDB warehouse file")


def check_warehouse_file(path: str | os.PathLike[str]) -> None:
    """Refuse a path that exists but cannot be a DuckDB file, without opening
    it (an ingest may hold it): a directory, a FIFO or a device, or a file
    whose header lacks DuckDB's magic bytes. A missing file is fine here:
    the ingest creates it (see check_warehouse_target)."""
    path = Path(path)
    _refuse_special(path)
    if path.exists():
        with path.open("rb") as f:
            head = f.read(12)
        if head[8:12] != b"DUCK":
            raise NotAWarehouse(f"{path} is not a DuckDB warehouse file")


def _check_creatable(path: Path) -> None:
    """A missing warehouse must be creatable where it is named: the ingest
    makes the missing parent directories, the file and its lock beside it.
    Tried for real, with a file created and removed at once in the nearest
    existing parent: permissions and mode bits do not tell (root may write
    anywhere, yet nothing can be created in /proc)."""
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotAWarehouse(f"cannot create {path}: {parent} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".newsdesk-probe-", dir=parent)
    except OSError as exc:
        raise NotAWarehouse(f"cannot create {path}: no file can be created in {parent} "
                            f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_warehouse_target(path: str | os.PathLike[str]) -> None:
    """For the commands that create or write the warehouse (ingest, serve,
    reindex), before they start: check_warehouse_file; a missing file must
    be creatable; an existing one must be a newsdesk warehouse or an empty
    DuckDB file, not another program's (NotAWarehouse, the file untouched:
    it is looked at read-only)."""
    path = Path(path)
    check_warehouse_file(path)
    if not path.exists():
        _check_creatable(path)
        return
    try:
        con = _open(path, True, 0)
    except (WarehouseBusy, NotAWarehouse, duckdb.Error):
        # Held by an ingest (so a warehouse), or unreadable (a truncated
        # copy): the run's own open and migration decide and report it.
        return
    try:
        refuse_foreign(con)
    finally:
        con.close()


# Rows per row group of the tables newsdesk writes. A checkpoint rewrites a
# table's last row group whole once rows were appended to it (DuckDB 1.5, for
# tables with indexes: duckdb#18829 is limited to tables without by #21316),
# so this bounds what every run's checkpoint recompresses: with DuckDB's
# 122,880, up to ~120k article bodies (1.6-2 s and hundreds of MB on a 100k
# warehouse); with 16,384, a few hundred ms. It is an ATTACH option, not
# stored in the file, so every writer must give it: a checkpoint without it
# merges the small row groups back. Finer row groups also prune finer on
# their min/max (the story window, the run report).
ROW_GROUP_SIZE = 16_384


def _open(path: Path, read_only: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
    """Open the file as the connection's default database, waiting with
    backoff while another process holds it (DuckDB allows one writer
    process, and no reader beside it)."""
    _refuse_special(path)
    deadline = time.monotonic() + wait_s
    delay = 0.05
    literal = "'" + str(path).replace("'", "''") + "'"
    options = "READ_ONLY" if read_only else f"ROW_GROUP_SIZE {ROW_GROUP_SIZE}"
    while True:
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH {literal} AS warehouse ({options})")
            con.execute("USE warehouse")
            return con
        except BaseException as exc:
            con.close()
            if not isinstance(exc, duckdb.IOException):
                raise
            if "lock" not in str(exc).lower():
                raise NotAWarehouse(f"cannot open {path} as a DuckDB warehouse: {exc}") from None
            if time.monotonic() + delay > deadline:
                # DuckDB's message names the holder's program and PID.
                raise WarehouseBusy(
                    f"{path} is held by another process and stayed locked for {wait_s:g} s: {exc}. DuckDB lets no "
                    "other process open a file while one holds it: an ingest loading a batch lets go within "
                    "seconds, a notebook, DBeaver or the duckdb CLI holding it open does not. Close that "
                    "connection, or keep the warehouse in a lake, where readers and writers never wait for each "
                    "other (docs/warehouse.md)") from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def connect(path: str | os.PathLike[str], *, read_only: bool = False,
            wait_s: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, migrated to the current schema when writable.
    Waits up to `wait_s` for a lock held by another process. `path` may
    name a lake instead (`ducklake:postgres:...`, see warehouse/lake.py),
    which has no lock to wait for."""
    if is_lake(path):
        from warehouse.lake import connect_lake

        target = parse_lake(path)
        with connect_lake(target, read_only=read_only,
                          memory_limit=MEMORY_LIMIT if read_only else WRITER_MEMORY_LIMIT) as con:
            yield con
        return
    path = Path(path)
    if read_only and not path.exists():
        raise NoWarehouse(f"no warehouse at {path}: run `newsdesk ingest` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only, wait_s)
    # Spills go beside the warehouse for its (one) writer; readers, of which
    # there may be many at once, each get a private directory. DuckDB's own
    # default, `.tmp` under whatever the working directory is, suits neither.
    spill = None if not read_only else tempfile.mkdtemp(prefix="newsdesk-read-")
    try:
        _prepare(con)
        con.execute("SET temp_directory = ?", [spill or f"{path}.tmp"])
        if not read_only:
            _writable(con)
        else:
            refuse_foreign(con)  # another program's file: say so, not "no column published_date"
        yield con
    finally:
        con.close()
        if spill:
            shutil.rmtree(spill, ignore_errors=True)


@contextmanager
def connect_sandboxed(path: str | os.PathLike[str], *, allow_read: Sequence[str | os.PathLike[str]] = (),
                      wait_s: float = 30.0, as_of: int | datetime | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse for ad hoc SQL so that nothing can be written
    anywhere: the file read-only, and no file system access at all (no
    COPY ... TO, EXPORT DATABASE, ATTACH, INSTALL/LOAD, read_csv) except
    reading under the `allow_read` directories. The configuration is then
    locked, so a query cannot switch any of it back. On a lake, `as_of` (a
    snapshot id or a time) reads the lake as it was then."""
    if is_lake(path):
        target = parse_lake(path)
        with _sandboxed_lake(target, allow_read, as_of) as con:
            yield con
        return
    if as_of is not None:
        raise InputError("--as-of needs a lake: a DuckDB file keeps no earlier versions")
    path = Path(path)
    if not path.exists():
        raise NoWarehouse(f"no warehouse at {path}: run `newsdesk ingest` first")
    # DuckDB adds its temp directory to the allowed directories itself (the
    # default is `.tmp` under the working directory, which a statement could
    # then write and read): spills go to a private directory of this
    # connection's own, removed when it closes.
    spill = tempfile.mkdtemp(prefix="newsdesk-sql-")
    con = _open(path, True, wait_s)
    try:
        _prepare(con)
        con.execute("SET temp_directory = ?", [spill])
        # Extensions are neither installed nor loaded from here: not from a
        # repository, not from a file, not a community one.
        con.execute("SET allow_community_extensions = false")
        _lock_down(con, _directories(allow_read))
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _directories(allow_read: Sequence[str | os.PathLike[str]]) -> list[str]:
    return [str(Path(d).expanduser().resolve()).rstrip("/") + "/" for d in allow_read]


def _lock_down(con: duckdb.DuckDBPyConnection, dirs: list[str]) -> None:
    """No file but under `dirs`, and no setting changed from here on."""
    if dirs:
        # Only honoured while external access is off: exactly our case.
        # DuckDB's list grants writing as well as reading: that no
        # statement writes is the gate's work (warehouse/adhoc.py).
        con.execute("SET allowed_directories = ?", [dirs])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


@contextmanager
def _sandboxed_lake(target: LakeTarget, allow_read: Sequence[str | os.PathLike[str]],
                    as_of: int | datetime | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The sandbox of `connect_sandboxed` around a lake attached read-only.
    The lake reads its own data files, so its data folder is allowed
    (reading only: the gate admits no statement that writes)."""
    from warehouse.lake import attach

    spill = tempfile.mkdtemp(prefix="newsdesk-sql-")
    con = duckdb.connect()
    try:
        _prepare(con)
        con.execute("SET temp_directory = ?", [spill])
        con.execute("SET allow_community_extensions = false")
        attach(con, target, read_only=True, as_of=as_of)
        data = con.execute("SELECT value FROM lake.options() WHERE option_name = 'data_path'").fetchone()
        dirs = _directories(allow_read)
        if data and "://" not in data[0]:
            dirs.append(data[0].rstrip("/") + "/")
        _lock_down(con, dirs)
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


class Writer:
    """The writer's connection for a stream of short load transactions.

    Opening and closing the file costs a checkpoint each time (~35 ms a
    batch, growing with the file), so the connection is kept between loads,
    but for no more than `hold_s` seconds at a stretch: then it is closed
    after the load, and a reader waiting on the lock gets in before the next
    one opens it again."""

    def __init__(self, path: str | os.PathLike[str], hold_s: float = 5.0):
        self.lake = is_lake(path)
        self.path = Path(path) if not self.lake else path
        self.hold_s = hold_s
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened = 0.0
        self._lake_scope: ExitStack | None = None

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.lake:
            # A lake has no lock to hand over: the connection stays for the run.
            if self._con is None:
                from warehouse.lake import connect_lake

                self._lake_scope = ExitStack()
                target = parse_lake(self.path)
                self._con = self._lake_scope.enter_context(
                    connect_lake(target, memory_limit=WRITER_MEMORY_LIMIT))
            try:
                yield self._con
            except BaseException:
                self.close()
                raise
            return
        if self._con is None:
            assert isinstance(self.path, Path)  # not a lake: __init__ made it a Path
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = _open(self.path, False, 30.0)
            _prepare(self._con)
            self._con.execute("SET temp_directory = ?", [f"{self.path}.tmp"])
            _writable(self._con)
            self._opened = time.monotonic()
        try:
            yield self._con
        except BaseException:
            self.close()
            raise
        if time.monotonic() - self._opened >= self.hold_s:
            self.close()

    def close(self) -> None:
        if self._lake_scope is not None:
            self._lake_scope.close()
            self._lake_scope = None
            self._con = None
        if self._con is not None:
            self._con.close()
            self._con = None
