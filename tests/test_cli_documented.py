"""Every command and every option of the CLI is named in README.md or
docs/ (as sqlite-utils' test_commands_are_documented): a new option that
nobody wrote down fails here, not in a user's hands."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from flows.cli import app

ROOT = Path(__file__).resolve().parent.parent


def _docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def _commands(group, prefix: str = ""):
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        yield path, command
        if hasattr(command, "commands"):  # a group (typer's are not click.Group instances either)
            yield from _commands(command, path + " ")


def test_every_command_and_option_is_documented():
    docs = _docs()
    missing = []
    for path, command in _commands(typer.main.get_command(app)):
        if not re.search(rf"newsdesk {re.escape(path)}\b", docs):
            missing.append(f"command `newsdesk {path}`")
        for param in command.params:
            # typer's options are not click.Option instances (typer carries its own click)
            if param.param_type_name != "option" or param.hidden:
                continue
            flags = [f for f in param.opts + param.secondary_opts if f.startswith("--") and f != "--help"]
            if flags and not any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", docs) for f in flags):
                missing.append(f"`newsdesk {path} {flags[0]}`")
    assert not missing, "not in README.md or docs/*.md:\n" + "\n".join(missing)
