"""The error types of newsdesk: one root, one subclass per kind.

`NewsdeskError` is the root of every error newsdesk raises on purpose; its
class says how a command ends when one reaches the CLI (`exit_code`: 2 when
the user's input is wrong, 1 when a run or a command failed), so the CLI
needs no list of types.

A `StageError` is a failure of one item of a run (a feed, a page, a record):
it carries the URL it concerns, the stage that raised it and a short
machine-readable `reason` code (``http_404``, ``timeout``, ``not_html`` ...),
so that it can be recorded as a row and counted by reason. Stage errors are
recorded, never swallowed: the flow turns each one into a `failures` row.
"""

from __future__ import annotations

from typing import Any

from transforms.controls import strip_controls


class NewsdeskError(Exception):
    """Root of every error newsdesk raises on purpose."""

    exit_code = 1  # a run or a command failed


class InputError(NewsdeskError):
    """What the user gave is wrong: an argument, the sources file, a --db,
    an OPML file, SQL. Saying it again differently is the fix."""

    exit_code = 2


class NoWarehouse(InputError, FileNotFoundError):
    """--db names no warehouse (yet) where one is needed."""


class StageError(NewsdeskError):
    """One item of a run failed at one stage; recorded as a `failures` row."""

    stage = "pipeline"

    def __init__(self, url: str | None, reason: str, message: str = "", *, transient: bool = False):
        self.url = url
        self.reason = reason
        # A message may quote the other side (a server's reason phrase): it
        # is stored and logged, so no terminal control character stays in it.
        self.message = strip_controls(message) or reason
        # A transient error (timeout, 5xx, 429) is worth retrying in a later run.
        self.transient = transient
        super().__init__(f"[{self.stage}:{reason}] {url}: {self.message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (extraction workers): rebuild from
        # the fields, not from the formatted message Exception keeps in args.
        return (self.__class__, (self.url, self.reason, self.message), dict(self.__dict__))


class FetchError(StageError):
    stage = "fetch"

    def __init__(self, url: str | None, reason: str, message: str = "", *, transient: bool = False,
                 retry_after: float | None = None):
        super().__init__(url, reason, message, transient=transient)
        # Seconds the server asked us to wait (Retry-After), if it said.
        self.retry_after = retry_after


class ParseError(StageError):
    stage = "parse"


class ExtractError(StageError):
    stage = "extract"
