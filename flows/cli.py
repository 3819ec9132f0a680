"""The `newsdesk` command: a thin shell over the flow and the warehouse.

Library errors become CLI errors here, at the edge, in one place
(`_reporting`): one or two plain lines on stderr, exit 2 when the user's
input is wrong (arguments, sources file, a --db that is not a warehouse, SQL),
1 when a run or a query failed. A traceback only with `newsdesk --debug`.
Exit 3 when an ingest completed but some feeds or entries failed.
Prefect is imported only by the commands that run a flow, so `newsdesk sql`
starts fast.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import traceback
from contextlib import contextmanager, nullcontext
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.text import Text

from transforms.controls import escape_controls, escape_controls_json
from transforms.errors import InputError, NoWarehouse
from transforms.records import RunCounts

app = typer.Typer(
    help="Turn RSS/Atom feeds into a deduplicated, dated archive of article texts in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks only with --debug, and then plain ones
    # Usage errors as click prints them: "Usage: ..." and "Error: ..." lines,
    # not a boxed panel that a log or a cron mail shows as box-drawing
    # characters. Typer ties its rich error panel and rich help to this one
    # switch, so --help is click's plain layout too.
    rich_markup_mode=None,
)
err = Console(stderr=True)
_debug = False


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="On an error, print the full traceback too.")] = False) -> None:
    global _debug
    _debug = debug


def _say(label: str, message: object) -> None:
    """One error on stderr. The message is plain text, never rich markup:
    `[fetch:http_404]` or a query's `[/x]` are shown as they are, and a
    control character in it (DuckDB quotes the value it could not convert)
    as an escape."""
    err.print(Text.assemble((f"{label}: ", "red"), escape_controls(str(message))), highlight=False, soft_wrap=True)


# What the operating system says of a path the user gave: their input, exit 2.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)


@contextmanager
def _reporting(failed: str = "error", *, run: bool = False):
    """The one error path of every command: an error becomes a line and an
    exit code, the code its class's (`NewsdeskError.exit_code`: 2 for the
    user's input, 1 for a failure). With `run`, whatever escapes is a failed
    run (exit 1): the flow has recorded it."""
    from transforms.errors import NewsdeskError
    from warehouse.adhoc import QueryError

    try:
        yield
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
        raise
    except BrokenPipeError:
        # The reader of stdout left (`newsdesk sql ... | head`): end quietly, as
        # a tool killed by SIGPIPE does (128 + 13), and keep Python from
        # complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None
    except Exception as exc:
        if run:
            code = 1
        elif isinstance(exc, NewsdeskError):
            code = exc.exit_code
        else:
            code = 2 if isinstance(exc, _PATH_ERRORS) else 1
        if _debug:
            traceback.print_exc()
        label = "SQL error" if isinstance(exc, QueryError) else failed
        _say(label, exc if code == 2 or run else f"{type(exc).__name__}: {exc}")
        raise typer.Exit(code) from None

# Without PREFECT_API_URL, Prefect starts a temporary server and gives it 20 s;
# on a busy two-core machine (cron next to a test run) that start took longer
# and the run failed before it began. A user's own setting still wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

SourcesOpt = Annotated[Optional[Path], typer.Option("--sources", help="Sources file (TOML). Default: $NEWSDESK_SOURCES, else seeds/sources.toml.")]
DbOpt = Annotated[Optional[str], typer.Option(
    "--db", help="DuckDB file, or a lake: 'ducklake:postgres:dbname=... host=...'. "
                 "Default: $NEWSDESK_DB, else ./newsdesk.duckdb.")]



class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def ingest(
    sources: SourcesOpt = None,
    db: DbOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    from_warc: Annotated[Optional[list[Path]], typer.Option(
        "--from-warc", exists=True, dir_okay=False,
        help="Take the pages from this WARC file (a saved crawl) instead of the feeds; repeatable.")] = None,
    data_path: Annotated[Optional[str], typer.Option(
        "--data-path", metavar="DIR", help="With a new lake as --db: the folder for its data files (local or "
                                           "shared; object storage URLs pass to DuckDB). Default: $NEWSDESK_DATA_PATH.")]
    = None,
    all_feeds: Annotated[bool, typer.Option(
        "--all-feeds", help="Poll every feed now, whether due or not (and those backing off after failures).")]
    = False,
) -> None:
    """Run the `ingest` flow once: fetch the due feeds, extract new articles, load them."""
    # No telemetry from the temporary server: the machine may have no internet.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if quiet:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.settings import default_db, load_settings
    from warehouse.connection import check_warehouse_target

    with _reporting():
        settings = load_settings(sources)  # fail on a bad sources file or --db before Prefect starts
        target = default_db(db)
        if isinstance(target, Path):
            check_warehouse_target(target)
        else:  # a new lake is made here, with its data folder; the flow's connections then find it
            from warehouse.lake import connect_lake
            from warehouse.target import parse_lake

            lake = parse_lake(target, data_path or os.environ.get("NEWSDESK_DATA_PATH"))
            with connect_lake(lake):
                pass

    import asyncio

    from flows.ingest import flow_for

    ingest_flow = flow_for(settings)  # with a Dask task runner when [pipeline] asks for one
    if not _debug:
        _plain_console_logs()
    from flows.reaper import reap_children_on_exit

    reap_children_on_exit()  # our helper processes (Prefect's server, the forkserver) end with us, even on SIGKILL

    params = dict(sources=str(sources) if sources else None, db=str(db) if db else None,
                  from_warc=[str(p) for p in from_warc] if from_warc else None, all_feeds=all_feeds)
    with _reporting("ingest failed", run=True):  # the flow already recorded the failed run
        with _progress_bar() if not quiet and sys.stderr.isatty() else nullcontext():
            summary = asyncio.run(ingest_flow(**params))
    from transforms.reports import run_outcome

    counts = RunCounts.of_summary(summary)
    if not quiet:
        _print_summary(counts, summary["run_id"], summary["db"])
    code, verdict = run_outcome(counts)  # 0 ok, 3 partial, 1 every feed failed: see docs/reliability.md
    if code:
        err.print(verdict, markup=False, highlight=False)
        raise typer.Exit(code)


@contextmanager
def _progress_bar():
    """A bar per stage on stderr (feeds, pages) while the block runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    from flows import progress

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def on_event(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        with progress.listening(on_event):
            yield


def _plain_console_logs() -> None:
    """Prefect logs a failed run's traceback on the console; the CLI says it
    in one line instead. Only the console loses it: the copy in the Prefect
    API (the UI's run logs) keeps it, and --debug keeps it here too."""
    import copy
    import logging

    loggers = [logging.getLogger()] + [logger for name, logger in logging.Logger.manager.loggerDict.items()
                                       if name.startswith("prefect") and isinstance(logger, logging.Logger)]
    for handler in {h for logger in loggers for h in logger.handlers if isinstance(h, logging.StreamHandler)}:
        def plain(record, _format=handler.format):
            if record.exc_info or record.exc_text:
                record = copy.copy(record)  # other handlers still get the traceback
                record.exc_info = record.exc_text = None
            return _format(record)

        handler.format = plain  # type: ignore[method-assign]  # on purpose: this handler's own format


def _print_summary(s: RunCounts, run_id: str, db: str) -> None:
    out = Console()
    out.print(escape_controls(
        f"feeds: {s.feeds_ok}/{s.feeds_total} fetched ({s.feeds_not_modified} unchanged, {s.feeds_failed} failed"
        + (f", {s.feeds_not_due} not due" if s.feeds_not_due else "")
        + (f", {s.feeds_skipped} backing off" if s.feeds_skipped else "")
        + (f", {s.feeds_elsewhere} polled by other workers" if s.feeds_elsewhere else "") + ")\n"
        f"entries seen: {s.entries_seen} ({s.entries_known} already known)\n"
        f"articles new: {s.articles_new} ({s.articles_from_feed} from feed text)\n"
        f"duplicates skipped: {s.duplicates}\n"
        f"near-duplicates: {s.near_duplicates} (new articles that joined an existing story)\n"
        f"failures: {s.failures}" + (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(s.failure_reasons.items())) + ")" if s.failures else ""
        ) + f"\nwarehouse: {db} (run {run_id})"),
        highlight=False, markup=False, soft_wrap=True,  # a lake's name is long: one line, never wrapped
    )


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One SQL statement (SELECT, EXPLAIN ...), run read-only.")],
    db: DbOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    allow_read: Annotated[Optional[list[Path]], typer.Option(
        "--allow-read", exists=True, file_okay=False, dir_okay=True, metavar="DIR",
        help="Let the query read files (read_csv, read_parquet ...) under this directory; repeatable. "
             "Without it the query reads the warehouse only.")] = None,
    search_words: Annotated[Optional[str], typer.Option(
        "--search", help="Full-text search these words and make the hits a table search_hits(article_id, score, "
                         "rank) for the statement to join, e.g. JOIN articles USING (article_id).")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, metavar="SECONDS", help="Stop the query after this long (exit 2).")] = 300.0,
    max_rows: Annotated[int, typer.Option(
        "--max-rows", min=1, help="Refuse a result of more rows than this (exit 2); use `export` for the archive.")]
    = 1_000_000,
    max_mb: Annotated[int, typer.Option(
        "--max-mb", min=1, help="Refuse a result that holds more than this many MB (exit 2).")] = 256,
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", metavar="SNAPSHOT|TIME",
        help="On a lake: read it as it was at this snapshot id, or at this time (ISO 8601, UTC unless "
             "it says otherwise), e.g. 2026-12-02T09:00.")] = None,
) -> None:
    """Run one read-only SQL statement against the warehouse and print the result.

    The query cannot write anything anywhere (no COPY ... TO, EXPORT, ATTACH,
    INSTALL/LOAD, SET, not even under EXPLAIN ANALYZE) and reads no file but
    the warehouse unless --allow-read names a directory. With --search, the
    hits of a full-text search are the table search_hits(article_id, score, rank)."""
    from flows.settings import default_db
    from warehouse.adhoc import Limits, run_user_sql
    from warehouse.connection import connect_sandboxed

    with _reporting():
        target = default_db(db)  # --as-of on a file: connect_sandboxed says it needs a lake
        tables = None
        if search_words is not None:
            from flows.search_index import hits_table

            tables = {"search_hits": hits_table(target, search_words)}
        # During an ingest the file is locked only while a batch loads: wait for the gap.
        with connect_sandboxed(target, allow_read=allow_read or (), wait_s=30, as_of=_as_of(as_of)) as con:
            limits = Limits(timeout_s=timeout, max_rows=max_rows, max_bytes=max_mb * 2**20)
            columns, rows = run_user_sql(con, query, tables=tables, limits=limits)
        _print_rows(columns, rows, format)


def _as_of(value: str | None):
    """A snapshot id (digits) or a time; a time without a zone is UTC."""
    if value is None:
        return None
    if value.strip().isdigit():
        return int(value)
    from datetime import datetime, timezone

    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"--as-of {value!r} is neither a snapshot id nor a time (YYYY-MM-DDTHH:MM)") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _day(value: str | None, option: str):
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


SinceOpt = Annotated[Optional[str], typer.Option("--since", help="Only articles published on or after this day (YYYY-MM-DD).")]
UntilOpt = Annotated[Optional[str], typer.Option("--until", help="Only articles published on or before this day (YYYY-MM-DD).")]


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Words to look for in titles and bodies (BM25, stemmed).")],
    since: SinceOpt = None,
    until: UntilOpt = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Only articles first seen in this feed.")] = None,
    language: Annotated[Optional[str], typer.Option("--language", help="Only articles in this language (ISO 639-1).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Most results to show.")] = 20,
    db: DbOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
) -> None:
    """Full-text search of the archive: best matches first, one row per story.

    Words are stemmed in each article's own language; --language searches
    one language only (its stemmer and stop words), else all of them."""
    from flows import search_index
    from flows.settings import default_db
    from transforms.snippets import snippet
    from warehouse.connection import connect

    with _reporting():
        start, end = _day(since, "--since"), _day(until, "--until")
        target = default_db(db)
        with connect(target, read_only=True) as con:  # no warehouse, or no index beside it: FileNotFoundError
            hits = search_index.search(con, target, query, since=start, until=end, source=source,
                                       language=language, limit=limit)
    columns = ["score", "published_date", "source", "title", "url", "snippet", "story_matches"]
    rows = [(round(h["score"], 3), h["published_date"], h["source"], h["title"], h["url"],
             snippet(h["body"], query), h["story_matches"]) for h in hits]
    _print_rows(columns, rows, format, {"source": 18, "title": 40, "url": 40, "snippet": 60})


@app.command()
def reindex(
    sources: SourcesOpt = None,
    db: DbOpt = None,
) -> None:
    """Rebuild the search index from every article (runs update it incrementally).

    Needed only when the index was lost or analysis settings changed; it waits
    for a running ingest to finish, and searches use the old index meanwhile."""
    from flows import search_index
    from flows.locks import ingest_lock
    from flows.settings import default_db, load_settings
    from warehouse.connection import check_warehouse_target, connect

    with _reporting():
        target = default_db(db)
        settings = load_settings(sources)
        if isinstance(target, Path) and not target.exists():
            raise NoWarehouse(f"no warehouse at {target}: run `newsdesk ingest` first")
        if isinstance(target, Path):
            check_warehouse_target(target)  # before the lock file is created beside it
        # Busy (another ingest past lock_wait_s, the file held) is not bad input: exit 1.
        # A lake has no ingest lock: this machine's index is its own (tantivy locks its writer).
        with (ingest_lock(target, settings.pipeline.lock_wait_s) if isinstance(target, Path) else nullcontext()), \
                connect(target, read_only=not isinstance(target, Path)) as con:
            done = search_index.rebuild(con, target)
        print(f"indexed {done.articles} articles in {done.seconds:.1f} s into {search_index.index_dir(target)}")


@app.command()
def reextract(
    since: SinceOpt = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Only articles first seen in this feed.")] = None,
    sources: SourcesOpt = None,
    db: DbOpt = None,
) -> None:
    """Re-extract archived pages with the current extractor, offline.

    Rebuilds bodies and page metadata from the raw WARC archive; rows change
    only where the result did, and replaced bodies go to article_revisions."""
    from flows.reextract import reextract as run_reextract
    from flows.settings import default_db, load_settings

    with _reporting():
        settings = load_settings(sources)
        start = _day(since, "--since")
    with _reporting("re-extraction failed"):
        report = run_reextract(default_db(db), settings, start, source)
    out = Console(markup=False, highlight=False)
    out.print(f"re-extracted {report.articles} archived articles: {len(report.changed)} changed, "
              f"{len(report.kept)} kept (new result not usable), {len(report.missing)} missing from the archive",
              highlight=False)
    for article_id, title, fields in report.changed:
        out.print(escape_controls(f"  changed {article_id} {title!r}: {', '.join(fields)}"), highlight=False)
    for article_id, why in report.kept + report.missing:
        out.print(escape_controls(f"  kept    {article_id}: {why}"), highlight=False)


@app.command()
def serve(
    sources: SourcesOpt = None,
    db: DbOpt = None,
    allow_dir: Annotated[Optional[list[Path]], typer.Option(
        "--allow-dir", exists=True, file_okay=False, dir_okay=True, metavar="DIR",
        help="Runs started from the UI or API may use sources files, warehouses and WARC files inside this "
             "directory; repeatable. Without it they use only the --sources and --db given here.")] = None,
) -> None:
    """Serve the flow as the Prefect deployment ingest/newsdesk, on a schedule and from the UI.

    Runs on the cron of the sources file's schedule section and on demand from
    the Prefect UI (Run). A run uses the sources file and warehouse given
    here; other paths in its parameters only inside an --allow-dir directory,
    else the run fails naming the parameter. Runs never overlap: one started
    while another is going waits."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.settings import default_db, default_sources_path, load_settings
    from warehouse.connection import check_warehouse_target

    with _reporting():
        settings = load_settings(sources)
        target = default_db(db)
        if isinstance(target, Path):
            check_warehouse_target(target)
            target = target.resolve()
    from flows.deployment import serve as serve_deployment

    serve_deployment(settings, str(default_sources_path(sources).resolve()), str(target),
                     [str(d) for d in allow_dir or ()])


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="How many runs, newest first.")] = 20,
    db: DbOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
) -> None:
    """List recent ingest runs from the warehouse, newest first."""
    from flows.settings import default_db
    from warehouse.connection import connect
    from warehouse.run_rows import select_recent_runs

    with _reporting():
        with connect(default_db(db), read_only=True) as con:
            columns, rows = select_recent_runs(con, limit)
    _print_rows(columns, rows, format)


@app.command()
def migrate(
    to: Annotated[str, typer.Option("--to", metavar="LAKE",
                                    help="The lake to move into: 'ducklake:postgres:dbname=... host=... user=...'.")],
    data_path: Annotated[Optional[str], typer.Option(
        "--data-path", metavar="DIR",
        help="A new lake's data folder (local or shared; object storage URLs pass to DuckDB as they are). "
             "Default: $NEWSDESK_DATA_PATH.")] = None,
    db: Annotated[Optional[Path], typer.Option("--db", help="The warehouse file to move. Default: $NEWSDESK_DB, "
                                                            "else ./newsdesk.duckdb.")] = None,
) -> None:
    """Copy a DuckDB file warehouse into an empty lake; the file stays as it was.

    Prints the articles' count and checksum of (url, content_hash) on both
    sides. Killed half-way, it can be run again; run again after it finished,
    it copies nothing."""
    from flows.locks import ingest_lock
    from flows.settings import default_db_path
    from warehouse.connection import check_warehouse_file, check_warehouse_target, connect
    from warehouse.moving import move_into_lake
    from warehouse.target import FileTarget, parse_target

    with _reporting():
        source = default_db_path(db)
        check_warehouse_file(source)
        if not source.exists():
            raise NoWarehouse(f"no warehouse at {source}")
        # Read-only, before the lock and the writable open: opening another
        # program's file for writing would replay its WAL into it.
        check_warehouse_target(source)
        target = parse_target(to, data_path or os.environ.get("NEWSDESK_DATA_PATH"))
        if isinstance(target, FileTarget):
            raise InputError(f"--to {to!r} is not a lake (ducklake:postgres:...)")
    with _reporting("migrate failed"):
        # The file is migrated to the current schema first (and no ingest writes meanwhile).
        with ingest_lock(source, 30.0):
            with connect(source):
                pass
            from warehouse.lake import connect_lake

            with connect_lake(target) as con:
                moved = move_into_lake(con, source)
    out = Console(highlight=False, markup=False, soft_wrap=True)
    if moved.already:
        out.print(f"{to} holds this warehouse already ({moved.articles} articles): nothing copied")
    else:
        out.print(f"moved {source} into {to}:")
        for table, n in moved.tables.items():
            out.print(f"  {table}: {n}")
    out.print(f"articles (count:checksum of url|content_hash): file {moved.checksum_file}, lake {moved.checksum_lake}")
    if not moved.matches:
        _say("migrate failed", "the lake's articles do not match the file's")
        raise typer.Exit(1)


@app.command()
def maintain(
    db: DbOpt = None,
    sources: SourcesOpt = None,
    keep_days: Annotated[Optional[int], typer.Option(
        "--keep-days", min=0, metavar="N",
        help="Expire the lake's snapshots older than N days; --as-of reads the younger ones. "
             "Default: the sources file's [maintenance] keep_days, 30.")] = None,
    grace_hours: Annotated[Optional[float], typer.Option(
        "--grace-hours", min=0, metavar="H",
        help="Delete files no snapshot needs once they have been unreferenced H hours (a query that started "
             "before may still read them). Default: [maintenance] grace_hours, 24.")] = None,
) -> None:
    """Maintain the warehouse: on a lake, flush inlined rows, expire old snapshots, merge small files, delete unreferenced files.

    Prints the files per table before and after, the snapshots expired and
    the files deleted. One maintenance runs at a time per lake: a second one
    exits 1 at once. On a DuckDB file it runs a CHECKPOINT (a file keeps no
    snapshots and no small files)."""
    from flows.maintenance import describe
    from flows.maintenance import maintain as run_maintenance
    from flows.settings import default_db, load_settings

    with _reporting():
        settings = load_settings(sources).maintenance
        keep = settings.keep_days if keep_days is None else keep_days
        grace = settings.grace_hours if grace_hours is None else grace_hours
        target = default_db(db)
    with _reporting("maintain failed"):
        done = run_maintenance(target, keep_days=keep, grace_hours=grace)
    out = Console(highlight=False, markup=False, soft_wrap=True)
    for line in describe(done, grace):
        out.print(line)


class ExportFormat(str, Enum):
    parquet = "parquet"
    text = "text"
    jsonl = "jsonl"


@app.command()
def export(
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="parquet: partitioned by published_date; "
                                                 "text: one dated file per article; jsonl: one JSON object per line.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write into.")],
    since: SinceOpt = None,
    until: UntilOpt = None,
    db: DbOpt = None,
) -> None:
    """Export articles for downstream tools. Re-exporting a day replaces that day's files."""
    from flows.exports import export as run_export
    from flows.settings import default_db
    from warehouse.connection import check_warehouse_file

    with _reporting():
        start, end = _day(since, "--since"), _day(until, "--until")
        target = default_db(db)
        if isinstance(target, Path):
            check_warehouse_file(target)
    with _reporting("export failed"):
        count, where = run_export(target, format.value, out, start, end)
    Console().print(f"exported {count} article{'s' if count != 1 else ''} to {where}", highlight=False, markup=False)


feeds_app = typer.Typer(help="The feed registry: import and export OPML, list and remove feeds.",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(feeds_app, name="feeds")


def _open_registry(db: str | None, data_path: str | None = None):
    """The warehouse to write the registry into; a new lake is made with its data folder."""
    from flows.settings import default_db
    from warehouse.connection import check_warehouse_target, connect

    target = default_db(db)
    if isinstance(target, Path):
        check_warehouse_target(target)
        return connect(target)
    from warehouse.lake import connect_lake
    from warehouse.target import parse_lake

    lake = parse_lake(target, data_path or os.environ.get("NEWSDESK_DATA_PATH"))
    return connect_lake(lake)


@feeds_app.command("import")
def feeds_import(
    file: Annotated[Path, typer.Argument(help="An OPML file (from a feed reader, or `newsdesk feeds export`).",
                                         exists=True, dir_okay=False)],
    tag: Annotated[Optional[list[str]], typer.Option("--tag", "-t", help="Add this tag to every feed imported; "
                                                                        "repeatable.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be imported; change nothing.")] = False,
    sources: SourcesOpt = None,
    db: DbOpt = None,
    data_path: Annotated[Optional[str], typer.Option(
        "--data-path", metavar="DIR", help="With a new lake as --db: the folder for its data files. "
                                           "Default: $NEWSDESK_DATA_PATH.")] = None,
) -> None:
    """Add the feeds of an OPML file to the warehouse's registry: the next ingest polls them.
    Folders and categories become tags; duplicates and outlines without xmlUrl are reported and skipped."""
    from flows.settings import default_db, load_settings
    from transforms.opml import MAX_OPML_BYTES, merged_tags, plan_import, read_opml
    from warehouse import feed_registry

    with _reporting("import failed"):
        with open(file, "rb") as f:
            data = f.read(MAX_OPML_BYTES + 1)
        document = read_opml(data, url=str(file))
        settings = load_settings(sources)  # its names and URLs are taken, whether an ingest registered them yet
        target = default_db(db)
        known_urls: dict[str, str] = {}
        known_names: set[str] = set()
        added, retagged, reactivated = 0, {}, []
        # A dry run writes nothing: not even a new warehouse file.
        opened = (nullcontext(None) if dry_run and isinstance(target, Path) and not target.exists()
                  else _open_registry(db, data_path))
        with opened as con:
            if con is not None:
                known_urls = feed_registry.registered_urls(con)
                known_names = feed_registry.registered_names(con)
            plan = plan_import(document.outlines, known_urls=known_urls | {f.url: f.name for f in settings.feeds},
                               known_names=known_names | {f.name for f in settings.feeds},
                               extra_tags=tuple(tag or ()))
            names = [name for name, _ in plan.tags_of_known]
            if con is not None:
                retagged = merged_tags(feed_registry.opml_tags(con, names), plan.tags_of_known)
                reactivated = [n for n, origin, active in feed_registry.registry_state(con, names)
                               if origin == "opml" and not active]
                if not dry_run:  # a feed removed before and listed again is polled again
                    added = feed_registry.register_feeds(con, plan.new)
                    feed_registry.set_tags(con, retagged)
                    feed_registry.set_active(con, reactivated, True)
    problems = sorted(document.problems + plan.problems, key=lambda p: p.line or 0)
    for problem in problems[:20]:
        _say("skipped", f"{file}:{problem.line}: {problem.message}" if problem.line else problem.message)
    if len(problems) > 20:
        _say("skipped", f"... and {len(problems) - 20} more")
    verb = "would import" if dry_run else "imported"
    changes = [f"{len(plan.known)} already registered"]
    if retagged:
        changes.append(f"{len(retagged)} given new tags" if not dry_run else f"{len(retagged)} would get new tags")
    if reactivated:
        changes.append(f"{len(reactivated)} removed before, " + ("polled again" if not dry_run else "would be polled again"))
    Console().print(
        f"{verb} {len(plan.new) if dry_run else added} feeds from {file} ({len(document.outlines)} feed outlines, "
        f"{document.folders} folders; {', '.join(changes)}, {len(problems)} skipped)",
        highlight=False, markup=False, soft_wrap=True)


@feeds_app.command("export")
def feeds_export(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the OPML here instead of stdout.")] = None,
    sources: SourcesOpt = None,
    db: DbOpt = None,
) -> None:
    """Print OPML of every feed an ingest polls: the sources file's and those imported from OPML."""
    from datetime import datetime, timezone

    from flows.settings import default_db, load_settings
    from transforms.opml import write_opml
    from transforms.records import RegistryFeed
    from warehouse import feed_registry
    from warehouse.connection import connect

    with _reporting("export failed"):
        settings = load_settings(sources)
        feeds = [RegistryFeed(name=f.name, url=f.url, language=f.language, tags=f.tags, origin="sources file")
                 for f in settings.feeds]
        target = default_db(db)
        if not isinstance(target, Path) or target.exists():
            with connect(target, read_only=True) as con:
                names = {f.name for f in feeds}
                feeds += [f for f in feed_registry.opml_feeds(con) if f.name not in names]
        data = write_opml(feeds, title="newsdesk feeds", now=datetime.now(timezone.utc))
        if out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            out.write_bytes(data)
    if out is not None:
        err.print(f"wrote {len(feeds)} feeds to {out}", highlight=False, markup=False)


@feeds_app.command("list")
def feeds_list(
    all: Annotated[bool, typer.Option("--all", help="Include feeds removed with `feeds remove`.")] = False,
    db: DbOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
) -> None:
    """List the registered feeds: where each came from, its last status and its schedule."""
    from flows.settings import default_db
    from warehouse import feed_registry
    from warehouse.connection import connect

    with _reporting():
        with connect(default_db(db), read_only=True) as con:
            columns, rows = feed_registry.registry_rows(con, include_inactive=all)
    _print_rows(columns, rows, format)


@feeds_app.command("remove")
def feeds_remove(
    names: Annotated[list[str], typer.Argument(help="Names of feeds imported from OPML.")],
    db: DbOpt = None,
) -> None:
    """Stop polling feeds imported from OPML; their articles and history stay (`feeds import` adds them back)."""
    from flows.settings import default_db
    from warehouse import feed_registry

    with _reporting():
        target = default_db(db)
        if isinstance(target, Path) and not target.exists():
            raise NoWarehouse(f"no warehouse at {target}: nothing is registered yet")
        with _open_registry(db) as con:
            # All or nothing: a typo among the names changes none of them.
            found = {n: (origin, bool(active)) for n, origin, active in feed_registry.registry_state(con, names)}
            unknown = [n for n in names if n not in found]
            from_file = [n for n, (origin, _) in found.items() if origin != "opml"]
            if unknown:
                raise InputError(f"no registered feed is named {', '.join(map(repr, unknown))}; nothing was removed "
                               "(`newsdesk feeds list --all` shows the names)")
            if from_file:
                raise InputError(f"{', '.join(map(repr, from_file))}: from the sources file (or a WARC file), not "
                               "OPML: delete them from that file instead; nothing was removed")
            feed_registry.set_active(con, names, False)
    removed = [n for n, (_, active) in found.items() if active]
    already = len(found) - len(removed)
    Console().print(f"removed {len(removed)} feed{'s; their' if len(removed) != 1 else '; its'} articles stay"
                    + (f" ({already} already removed)" if already else ""), highlight=False, markup=False)


def _cell(value: object) -> str:
    """A value as printed in a table or CSV cell: a control character stored
    in it (a warehouse from before they were stripped, or a query that makes
    one) is shown as `\\x1b`, never sent to the terminal raw."""
    return "" if value is None else escape_controls(str(value))


def _print_rows(columns: list[str], rows: list[tuple], format: Format, widths: dict[str, int] | None = None) -> None:
    """Every command's rows (sql, search, runs): no raw control character
    but tab and newline reaches stdout, in any format."""
    if format is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(map(_cell, columns))
        writer.writerows(map(_cell, r) for r in rows)
    elif format is Format.json:
        # json escapes C0 itself (\u001b, and the document parses back to the
        # stored value); DEL and C1 it would write raw.
        document = json.dumps([dict(zip(columns, r)) for r in rows], default=str, ensure_ascii=False, indent=1)
        sys.stdout.write(escape_controls_json(document) + "\n")
    else:
        from rich.table import Table

        # Off a terminal (a pipe, a log) the table is laid out wide instead of
        # wrapped to 80 columns; long cells are cut with an ellipsis.
        console = Console() if sys.stdout.isatty() else Console(width=200)
        table = Table(show_lines=False)
        for name in columns:
            width = (widths or {}).get(name, 70)
            table.add_column(Text(_cell(name)), no_wrap=True, overflow="ellipsis", min_width=min(len(name), 16, width),
                             max_width=width)
        for row in rows:
            # Text, not str: a cell is shown as it is, never read as rich markup.
            table.add_row(*(Text(_cell(v).replace("\n", " ")) for v in row))
        console.print(table)
        Console(stderr=True).print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", style="dim")


if __name__ == "__main__":
    app()
