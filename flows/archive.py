"""The raw archive: every fetched feed and page response, appended to
gzipped WARC files (warcio) under the warehouse's directory, rotated by size.

Each record is its own gzip member, so a record is read back by seeking to
its offset: `articles.warc_file` / `warc_offset` point at the page an
article came from, and `newsdesk reextract` rebuilds articles from there
without the network. Bodies are stored decoded (the Content-Encoding header
is dropped), exactly as the extractor saw them.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from flows.fetch import Response
from transforms.errors import FetchError, ParseError, StageError
from transforms.normalize import canonical_url
from transforms.records import FeedEntry

_DROP = {"content-encoding", "transfer-encoding", "content-length"}


@dataclass(frozen=True, slots=True)
class ArchivedResponse:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    location: tuple[str, int]  # (file, offset)


class WarcArchive:
    """Appends responses to <dir>/newsdesk-<time>-<n>.warc.gz, a new file once
    the current one passes `max_bytes`. Thread-safe: one writer at a time."""

    def __init__(self, directory: Path, root: Path, max_bytes: int = 100_000_000):
        self.dir = Path(directory)
        self.root = Path(root)  # locations are stored relative to it (the warehouse's folder) when inside
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._current: Path | None = None

    def _file(self) -> Path:
        if self._current is None or self._current.stat().st_size >= self.max_bytes:
            self.dir.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            self._current = self.dir / f"newsdesk-{stamp}.warc.gz"
            self._current.touch()
        return self._current

    def write(self, response: Response) -> tuple[str, int]:
        """Append one response; returns (file path, offset of its record)."""
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _DROP]
        headers.append(("Content-Length", str(len(response.body))))
        http = StatusAndHeaders(f"{response.status} OK" if response.status == 200 else str(response.status),
                                headers, protocol="HTTP/1.1")
        with self._lock:
            path = self._file()
            with path.open("ab") as f:
                offset = f.tell()
                writer = WARCWriter(f, gzip=True)
                if response.final_url.startswith(("http://", "https://")):
                    record = writer.create_warc_record(response.final_url, "response",
                                                       payload=io.BytesIO(response.body), http_headers=http)
                else:  # a file: feed or page has no HTTP exchange: a resource record
                    record = writer.create_warc_record(
                        response.final_url, "resource", payload=io.BytesIO(response.body),
                        warc_content_type=response.headers.get("content-type", "application/octet-stream"))
                writer.write_record(record)
        try:
            return str(path.resolve().relative_to(self.root.resolve())), offset
        except ValueError:
            return str(path.resolve()), offset


def resolve(location: str, root: Path) -> Path:
    """A stored warc_file: relative to the warehouse's folder, or absolute."""
    path = Path(location)
    return path if path.is_absolute() else Path(root) / path


def read_at(path: str, offset: int) -> ArchivedResponse:
    """The response record at this offset of a WARC file."""
    with open(path, "rb") as f:
        f.seek(offset)
        record = next(iter(ArchiveIterator(f)))
        return _response(record, (path, offset))


def iter_responses(path: str) -> Iterator[ArchivedResponse | FetchError]:
    """Every response (and resource) record of a WARC file, gzipped or not,
    with its offset. A record that cannot be read (bad headers, broken
    chunking, a truncated gzip member) ends the file: it comes out as one
    FetchError (`bad_warc_record`) after the good records before it, since
    nothing after it can be located reliably."""
    uri = Path(path).resolve().as_uri()
    with open(path, "rb") as f:
        records = ArchiveIterator(f)
        offset = 0
        try:
            for record in records:
                offset = records.get_record_offset()
                if record.rec_type == "resource" or (record.rec_type == "response" and record.http_headers is not None):
                    yield _response(record, (path, offset))
        except Exception as exc:  # warcio raises ArchiveLoadFailed, ChunkedDataException, zlib and OSError alike
            yield FetchError(uri, "bad_warc_record",
                             f"unreadable record after offset {offset}: {type(exc).__name__}: {str(exc).strip()}")


def _response(record, location: tuple[str, int]) -> ArchivedResponse:
    if record.http_headers is None:  # a resource record
        headers = {"content-type": record.rec_headers.get_header("Content-Type") or ""}
        status = 200
    else:
        headers = {k.lower(): v for k, v in record.http_headers.headers}
        status = int(record.http_headers.get_statuscode() or 0)
    body = record.content_stream().read()
    return ArchivedResponse(record.rec_headers.get_header("WARC-Target-URI"), status, headers, body, location)


def archive_for(enabled: bool, directory: str | None, max_file_mb: int, db_path: Path) -> WarcArchive | None:
    """The run's archive ([archive] settings): warc/ beside the warehouse unless
    `directory` says otherwise (relative to the warehouse's folder)."""
    if not enabled:
        return None
    root = db_path.resolve().parent
    where = Path(directory).expanduser() if directory else root / "warc"
    return WarcArchive(where if where.is_absolute() else root / where, root, max_file_mb * 1_000_000)


@dataclass(frozen=True)
class WarcInput:
    """Pages to ingest from WARC files (`ingest --from-warc`): one entry per
    HTML response, under one pseudo-feed per file."""

    entries: list[FeedEntry]
    where: dict[str, tuple[str, int]]  # canonical link -> (file, offset)
    failures: list[tuple[str, StageError]] = field(default_factory=list)  # (source, error): unreadable records

    def response_for(self, canonical_link: str) -> tuple[Response, tuple[str, int]]:
        path, offset = self.where[canonical_link]
        record = read_at(path, offset)
        return (Response(url=record.url, final_url=record.url, status=record.status, headers=record.headers,
                         body=record.body), (path, offset))


def warc_source(path: str) -> dict:
    """A WARC file's pseudo-feed, for the sources table."""
    resolved = Path(path).expanduser().resolve()
    return {"name": f"warc.{resolved.stem.split('.')[0]}", "url": resolved.as_uri(), "language": None,
            "tags": ["warc"], "origin": "warc"}


def warc_input(paths: Sequence[str]) -> WarcInput:
    entries, where = [], {}
    failures: list[tuple[str, StageError]] = []
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        name = warc_source(path)["name"]
        for record in iter_responses(str(resolved)):
            if isinstance(record, StageError):
                failures.append((name, record))
                continue
            kind = record.headers.get("content-type", "").split(";")[0].strip().lower()
            if record.status != 200 or not record.url or kind not in ("text/html", "application/xhtml+xml", ""):
                continue
            try:
                link = canonical_url(record.url)
            except ParseError as exc:
                failures.append((name, exc))
                continue
            if link in where:
                continue
            where[link] = (str(resolved), record.location[1])
            entries.append(FeedEntry(source=name, link=record.url, canonical_link=link, guid=None, title=None,
                                     author=None, published_at=None, feed_text="", language=None))
    return WarcInput(entries, where, failures)
