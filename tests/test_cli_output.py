"""What the CLI prints never carries a raw control character.

A warehouse written before control characters were stripped on the way in
(or by hand) can hold an ESC in a title: `newsdesk sql`, `search` and `runs`
show it escaped (`\\x1b`), in every format and on a terminal too."""

import json
import os
import pty
import select
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

NEWSDESK = Path(sys.executable).with_name("newsdesk")
runner = CliRunner()

TITLE = "Entity ctrl \x1b[2J\x1b[31mRED \x07 bell \x00nul \x9b31mcsi \x7fdel"
SHOWN = "Entity ctrl \\x1b[2J\\x1b[31mRED \\x07 bell \\x00nul \\x9b31mcsi \\x7fdel"
BODY = "Entity ctrl body about the hostile feed \x1b[2J.\n\nSecond\tparagraph \x9b31m here."
# What a terminal must never receive raw: every C0 control but tab and newline, DEL, every C1.
UNPRINTABLE = set(map(chr, [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A warehouse whose article title, body and run row hold raw controls,
    with its search index built."""
    from flows import search_index
    from warehouse.connection import connect

    db = tmp_path_factory.mktemp("ctrl") / "wh.duckdb"
    at = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    with connect(db) as con:
        con.execute(
            "INSERT INTO articles (article_id, url, source, title, author, published_at, published_date, date_source,"
            " language, body, body_source, word_count, content_hash, first_seen_at, run_id, extractor)"
            " VALUES ('a1', 'https://news.example.com/a', 'hostile', ?, 'Au\x1b[2Jthor', ?, ?, 'feed', 'en', ?,"
            " 'feed', 12, 'h', ?, 'run\x1b[2J', 'feed')",
            [TITLE, at, at.date(), BODY, at])
        con.execute("INSERT INTO runs (run_id, started_at, status, flow_run_id) VALUES (?, ?, 'completed', ?)",
                    ["run\x1b[2J", at, "flow\x9b31m\x00"])
        search_index.update(con, db)
    return db


def _assert_printable(text: str) -> None:
    raw = sorted(f"U+{ord(c):04X}" for c in set(text) & UNPRINTABLE)
    assert not raw, f"raw control characters printed: {raw}\n{text!r}"


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_sql_prints_stored_controls_escaped(hostile, fmt):
    result = runner.invoke(app, ["sql", "select title, author, body from articles", "--db", str(hostile), "-f", fmt])
    assert result.exit_code == 0, result.output
    _assert_printable(result.stdout)
    if fmt == "json":
        # JSON escapes, C1 and DEL included: the document parses back to the stored value.
        assert "\\u001b[2J" in result.stdout and "\\u009b31m" in result.stdout and "\\u007fdel" in result.stdout
        assert json.loads(result.stdout)[0] == {"title": TITLE, "author": "Au\x1b[2Jthor", "body": BODY}
    else:
        assert SHOWN in result.stdout and "Au\\x1b[2Jthor" in result.stdout
    if fmt == "csv":  # newline and tab are text: kept in a quoted cell
        assert "Second\tparagraph \\x9b31m here." in result.stdout and "[2J.\n\nSecond" in result.stdout


def test_sql_escapes_controls_in_column_names(hostile):
    for fmt in ("table", "csv", "json"):
        result = runner.invoke(app, ["sql", "select 1 as \"x\x1b[2Jy\x9b\"", "--db", str(hostile), "-f", fmt])
        assert result.exit_code == 0, result.output
        _assert_printable(result.stdout)


def test_search_and_runs_print_stored_controls_escaped(hostile):
    for fmt in ("table", "csv"):
        found = runner.invoke(app, ["search", "hostile", "--db", str(hostile), "-f", fmt])
        assert found.exit_code == 0, found.output
        _assert_printable(found.stdout)
        assert "Entity ctrl \\x1b[2J" in found.stdout  # the table cuts the title short
        if fmt == "csv":
            assert SHOWN in found.stdout and "hostile feed \\x1b[2J. Second paragraph \\x9b31m here." in found.stdout
        runs = runner.invoke(app, ["runs", "--db", str(hostile), "-f", fmt])
        assert runs.exit_code == 0, runs.output
        _assert_printable(runs.stdout)
        assert "run\\x1b[2J" in runs.stdout and "flow\\x9b31m\\x00" in runs.stdout
    found = runner.invoke(app, ["search", "hostile", "--db", str(hostile), "-f", "json"])
    _assert_printable(found.stdout)
    assert json.loads(found.stdout)[0]["title"] == TITLE


def test_an_error_message_quoting_a_stored_value_is_escaped(hostile):
    # DuckDB quotes the value it could not convert: the title itself, on stderr.
    result = runner.invoke(app, ["sql", "select title::int from articles", "--db", str(hostile)])
    assert result.exit_code == 2 and "SQL error" in result.output, result.output
    _assert_printable(result.output)
    assert "\\x1b[2J" in result.output


def test_the_table_on_a_terminal_has_no_hostile_sequence(hostile):
    """On a terminal rich styles the table with escapes of its own; the
    stored ones must not reach it."""
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": "250", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(NEWSDESK), "sql", "select title, body from articles", "--db", str(hostile)],
                            stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env)
    os.close(child)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, out
    text = out.decode("utf-8")
    assert "Entity ctrl \\x1b[2J\\x1b[31mRED \\x07 bell" in text, text
    for sequence in ("\x1b[2J", "\x1b[31mRED", "\x07", "\x00", "\x9b", "\x7f"):
        assert sequence not in text, (sequence, text)


def test_the_ingest_summary_is_escaped(capsys):
    from flows.cli import _print_summary
    from transforms.records import RunCounts

    counts = RunCounts(feeds_ok=1, feeds_total=1, entries_seen=1, articles_new=1, failures=1,
                       failure_reasons={"http\x1b[2J": 1})
    _print_summary(counts, "r\x9b1", "/tmp/w\x1b[2Jh.duckdb")
    out = capsys.readouterr().out
    _assert_printable(out)
    assert "http\\x1b[2J: 1" in out and "/tmp/w\\x1b[2Jh.duckdb" in out and "r\\x9b1" in out


def test_sql_into_a_reader_that_leaves_early_ends_quietly(tmp_path):
    """`newsdesk sql ... | head`: no error line, and the exit code of a tool
    killed by SIGPIPE (141), not a failure of newsdesk's own (1)."""
    from warehouse.connection import connect

    db = tmp_path / "wh.duckdb"
    with connect(db):
        pass
    newsdesk = Path(sys.executable).with_name("newsdesk")
    proc = subprocess.Popen([str(newsdesk), "sql", "select * from range(300000)", "--db", str(db), "-f", "csv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as head does after its lines
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err
    assert first.rstrip() == b"range" and err == b""
