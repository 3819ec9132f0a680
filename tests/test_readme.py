"""README and docs/ stay true: their commands run, their outputs are what the
commands print on the seeds, their SQL runs, and their links resolve.

The slow test runs README's main command as a user does (a subprocess, a
fresh PREFECT_HOME, Prefect's temporary server), then the examples shown
after it. The other tests read files only.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from flows.cli import app

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
NEWSDESK = Path(sys.executable).with_name("newsdesk")

# Pages written on other branches at the same time as this test; README links
# them already. Once merged they are checked like every other page; until
# then a missing one is tolerated, and only these.
PENDING = {"docs/feeds.md", "docs/security.md", "docs/scale.md", "docs/reliability.md", "docs/testing.md"}

# The pages whose `$ newsdesk ...` transcripts and SQL blocks were captured on
# the seeds, and are checked against them. (Other pages may show other data.)
SEED_PAGES = [README, DOCS / "operations.md", DOCS / "search.md", DOCS / "warehouse.md", DOCS / "stories.md"]

_FENCE_ANY = re.compile(r"^ *```([\w-]*)\n(.*?)^ *```$", re.M | re.S)
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def fenced(path: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of a markdown file, dedented."""
    blocks = []
    for m in _FENCE.finditer(path.read_text(encoding="utf-8")):
        indent = len(m["indent"])
        body = "".join(line[indent:] if line[:indent].isspace() else line
                       for line in m["body"].splitlines(keepends=True))
        blocks.append((m["lang"], body))
    return blocks


def block_after(blocks: list[tuple[str, str]], needle: str) -> tuple[str, str]:
    """The `sh` block that contains `needle`, and the output block after it."""
    for i, (lang, body) in enumerate(blocks):
        if lang == "sh" and needle in body:
            assert i + 1 < len(blocks) and blocks[i + 1][0] == "", f"no output block after {needle!r}"
            return body.strip(), blocks[i + 1][1]
    raise AssertionError(f"README has no sh block with {needle!r}")


def newsdesk_args(command: str) -> list[str]:
    """The arguments after `newsdesk` in a shell line."""
    argv = shlex.split(command)
    return argv[argv.index("newsdesk") + 1:]


def cli_commands() -> dict[str, set[str]]:
    """Every `newsdesk` subcommand and its option names, as `--help` lists them."""
    out = {}
    for name, cmd in typer.main.get_command(app).commands.items():
        out[name] = {opt for p in cmd.params for opt in p.opts + p.secondary_opts if opt.startswith("-")}
        for sub, subcmd in getattr(cmd, "commands", {}).items():  # a group: `newsdesk feeds import`
            out[f"{name} {sub}"] = {opt for p in subcmd.params for opt in p.opts + p.secondary_opts
                                    if opt.startswith("-")}
    return out


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


# -- cheap: files only --------------------------------------------------------


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    shown = [body.strip() for lang, body in fenced(README) if lang == "sh" and "pytest" in body]
    assert shown == [ci]


def test_readme_main_command_installs_then_ingests_the_seeds():
    command, _ = block_after(fenced(README), "newsdesk ingest")
    assert command.startswith("python3 -m pip install -q uv && python3 -m uv run newsdesk ingest")
    assert newsdesk_args(command) == ["ingest"]  # no --sources: the embedded seeds


def _code(text: str) -> list[str]:
    """The code in a markdown text: fenced blocks, then inline code spans."""
    return [body for _, body in _FENCE_ANY.findall(text)] + re.findall(r"`([^`\n]+)`", _FENCE.sub("", text))


def test_commands_shown_in_the_docs_exist_with_their_options():
    commands = cli_commands()
    listed = CliRunner().invoke(app, ["--help"]).output
    shown = 0
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for code in _code(page.read_text(encoding="utf-8")):
            # One shell command at a time; quoted arguments (SQL, queries) are not options.
            for part in re.split(r"&&|\|\||;|\n| \| ", re.sub(r"\"[^\"]*\"|'[^']*'", "''", code)):
                m = re.search(r"\bnewsdesk ([a-z][\w-]*)(.*)", part)
                if not m:
                    continue
                name, rest = m[1], m[2]
                sub = re.match(r" ([a-z][\w-]*)(.*)", rest)
                if sub and f"{name} {sub[1]}" in commands:
                    name, rest = f"{name} {sub[1]}", sub[2]
                assert name in commands, f"{page.name}: `newsdesk {name}` is not a command: {part.strip()!r}"
                assert name.split()[0] in listed, f"`newsdesk --help` does not list {name}"
                for opt in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", rest):
                    assert opt in commands[name] | {"--help"}, f"{page.name}: `newsdesk {name}` has no option {opt}"
                shown += 1
    assert shown >= 20


def _headings(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
            for title in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M)}


def broken_links(pages: list[Path], root: Path, pending: set[str] = frozenset()) -> tuple[list[str], int]:
    """Relative links of these pages that point to no file, or to no heading
    of a markdown file; and how many links were checked."""
    broken, checked = [], 0
    for page in pages:
        text = _FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][\w+.-]*:", target):  # http:, https:, mailto: ...
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            name = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
            if name in pending and not resolved.exists():
                continue
            checked += 1
            if not resolved.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _headings(resolved):
                broken.append(f"{page.name}: {target} (no such heading)")
    return broken, checked


def test_every_relative_link_points_to_an_existing_file_and_heading():
    broken, checked = broken_links([README, *sorted(DOCS.glob("*.md"))], REPO, PENDING)
    assert broken == []
    assert checked >= 20


def test_the_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Two words\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text("# Top\n\n[ok](docs/a.md#two-words) [self](#top) [web](https://example.com/x.md)\n"
                    "[gone](docs/b.md) [bad anchor](docs/a.md#three) [later](docs/pending.md)\n"
                    "```\n[in code](nowhere.md)\n```\n", encoding="utf-8")
    broken, checked = broken_links([page], tmp_path, {"docs/pending.md"})
    assert broken == ["README.md: docs/b.md (no such file)", "README.md: docs/a.md#three (no such heading)"]
    assert checked == 4


def test_every_file_the_docs_name_exists():
    named = set()
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for code in _code(page.read_text(encoding="utf-8")):
            named |= set(re.findall(r"(?<![\w/.-])((?:flows|transforms|warehouse|tests|benchmarks|seeds|docs)/[\w/.-]*\w\.(?:py|toml|md|json))\b", code))
    # README's map names files by their bare name, on the line of their package.
    for _, body in fenced(README):
        for package, rest in re.findall(r"^(flows|transforms|warehouse)/ +(.*)$", body, re.M):
            named |= {f"{package}/{name}" for name in re.findall(r"\b(\w+\.py)\b", rest)}
    missing = sorted(n for n in named if not (REPO / n).exists())
    assert missing == []
    assert len(named) >= 30


def test_readme_stays_short():
    assert len(README.read_bytes()) < 10_000


# -- slow: the commands, run on the seeds -------------------------------------


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "NEWSDESK_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def _transcripts(page: Path) -> list[tuple[list[str], list[str]]]:
    """(newsdesk arguments, output lines shown) of every `$ newsdesk ...` line."""
    found = []
    for lang, body in fenced(page):
        if lang or not body.startswith("$ newsdesk "):
            continue
        for chunk in re.split(r"^(?=\$ )", body, flags=re.M):
            if chunk.strip():
                first, _, output = chunk.partition("\n")
                found.append((newsdesk_args(first[2:]), _lines(output)))
    return found


def _sql_statements(page: Path) -> list[str]:
    statements = []
    for lang, body in fenced(page):
        if lang != "sql":
            continue
        text = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--"))
        statements += [s.strip() for s in text.split(";") if s.strip()]
    return statements


@pytest.mark.slow
def test_readme_commands_print_what_the_docs_show(tmp_path, monkeypatch):
    env = _env(tmp_path)
    blocks = fenced(README)

    # The main command, as README shows it: no --db, the warehouse lands in the working directory.
    command, shown = block_after(blocks, "newsdesk ingest")
    run = subprocess.run([str(NEWSDESK), *newsdesk_args(command)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "newsdesk.duckdb").exists()
    assert _UUID.sub("RUN", run.stdout).strip() == _UUID.sub("RUN", shown).strip()

    # The first query and its table, exactly.
    command, shown = block_after(blocks, "newsdesk sql")
    out = subprocess.run([str(NEWSDESK), *newsdesk_args(command)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _lines(out.stdout) == _lines(shown)

    # The rest runs in this process, through the same CLI (a subprocess
    # costs seconds of imports each). Transcripts in the docs (`$ newsdesk
    # ...` then its output): every line shown is printed, in that order (a
    # transcript may trim table borders); as on a terminal of 200 columns,
    # so that rich does not wrap a long line.
    monkeypatch.chdir(tmp_path)  # exports land here
    cli = CliRunner()
    env = {"COLUMNS": "200", "NEWSDESK_DB": str(tmp_path / "newsdesk.duckdb"), "NEWSDESK_SOURCES": None}
    transcripts = [t for page in SEED_PAGES for t in _transcripts(page)]
    assert len(transcripts) >= 5
    for args, lines in transcripts:
        assert args[0] in ("sql", "search", "runs", "export", "reextract"), args
        result = cli.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output, result.exception)
        printed = iter(_lines(result.stdout))
        for line in lines:
            assert any(p == line for p in printed), f"`newsdesk {' '.join(args)}` no longer prints {line!r}"

    # Every SQL example runs on the seeds' warehouse.
    statements = [s for page in SEED_PAGES for s in _sql_statements(page)]
    assert len(statements) >= 8
    for statement in statements:
        result = cli.invoke(app, ["sql", statement, "--format", "csv"], env=env)
        assert result.exit_code == 0, (statement, result.output)
