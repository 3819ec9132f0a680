"""Search-result snippets: a short window of a body around the first match."""

from __future__ import annotations

import re

_TERM = re.compile(r"\w+")


def snippet(body: str, query: str, width: int = 160) -> str:
    """About `width` characters of `body` around the first word that starts
    like a query term (so "travel" finds "travels", as the stemmed index
    does), on one line, with … where it was cut."""
    flat = " ".join(body.split())
    terms = sorted({t.lower()[:max(4, len(t) - 2)] for t in _TERM.findall(query) if len(t) > 1}, key=len, reverse=True)
    match = re.search(r"\b(?:" + "|".join(map(re.escape, terms)) + ")", flat, re.I) if terms else None
    if match is None:
        start = 0
    else:
        start = max(0, match.start() - width // 3)
        space = flat.rfind(" ", 0, start)
        start = space + 1 if start and space >= 0 else start
    end = min(len(flat), start + width)
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start else end
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")
