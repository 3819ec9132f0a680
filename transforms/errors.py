"""The error types of the pipeline: one root, one subclass per stage.

Each error carries the URL it concerns, the stage that raised it and a short
machine-readable `reason` code (``http_404``, ``timeout``, ``not_html`` ...),
so that a failure can be recorded as a row and counted by reason. Errors are
recorded, never swallowed: the flow turns each one into a `failures` row.
"""

from __future__ import annotations

from typing import Any

from transforms.controls import strip_controls


class NewsdeskError(Exception):
    """Root of every error the pipeline records."""

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


class FetchError(NewsdeskError):
    stage = "fetch"

    def __init__(self, url: str | None, reason: str, message: str = "", *, transient: bool = False,
                 retry_after: float | None = None):
        super().__init__(url, reason, message, transient=transient)
        # Seconds the server asked us to wait (Retry-After), if it said.
        self.retry_after = retry_after


class ParseError(NewsdeskError):
    stage = "parse"


class ExtractError(NewsdeskError):
    stage = "extract"
