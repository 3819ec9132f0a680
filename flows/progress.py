"""Progress events from the flow to whoever listens (the CLI's progress bar).

The flow calls `report`; with no listener it costs nothing. Kept out of the
flow's parameters so that a flow run from the Prefect UI needs no terminal.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

Listener = Callable[[str, int, int], None]
_listeners: list[Listener] = []


def report(stage: str, done: int, total: int) -> None:
    for listener in list(_listeners):
        listener(stage, done, total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
