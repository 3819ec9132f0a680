"""The dated-record text format of ../shared/seed-documents: `date YYYY-MM-DD`,
then the article's text."""

from __future__ import annotations

from datetime import date


def dated_record(day: date, body: str) -> str:
    return f"date {day.isoformat()} {body.strip()}\n"
