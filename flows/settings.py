"""Settings: the sources file (TOML) plus NEWSDESK_* environment variables.

Built once per run into frozen objects; code below the flow gets plain
arguments. Unknown keys and bad values are refused with a message that names
the key, so a typo in the sources file never passes silently.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
import unicodedata
from pathlib import Path
from typing import Annotated, Literal, Sequence
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from transforms.errors import InputError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = REPO_ROOT / "seeds" / "sources.toml"
DEFAULT_DB = Path("newsdesk.duckdb")
DEFAULT_USER_AGENT = "newsdesk/0.1 (news archive bot; +https://github.com/newsdesk/newsdesk)"


class SettingsError(InputError):
    """The sources file or an environment variable is wrong; says which key."""


# C0 controls, DEL and C1 controls: a CR/LF in a header would split it, and
# in a URL it is never what was meant.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _no_control(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"contains the control character {found.group()!r} at position {found.start()}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FetchSettings(_Strict):
    user_agent: Annotated[str, Field(min_length=3)] = DEFAULT_USER_AGENT
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 20.0  # per connect / read
    total_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0  # whole request, body included
    max_bytes: Annotated[int, Field(gt=0)] = 10_000_000
    max_concurrency: Annotated[int, Field(ge=1, le=256)] = 16
    per_host_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    per_host_delay_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    max_redirects: Annotated[int, Field(ge=0, le=30)] = 10
    retries: Annotated[int, Field(ge=0, le=10)] = 2  # within one run, for timeouts, 429 and 5xx
    retry_backoff_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    max_retry_after_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    allow_private_networks: tuple[str, ...] = ()
    obey_robots: bool = True  # robots.txt, fetched once per host per run, for article pages
    max_crawl_delay_s: Annotated[float, Field(ge=0, le=3600)] = 30.0  # cap on a robots.txt Crawl-delay

    @field_validator("user_agent")
    @classmethod
    def _header_value(cls, value: str) -> str:
        _no_control(value)
        # httpx sends header values as ASCII; anything else fails every request.
        if not value.isascii():
            raise ValueError("must be ASCII (it is sent as an HTTP header value)")
        return value

    @field_validator("allow_private_networks")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a CIDR network ({exc})") from None
        return value

    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.allow_private_networks)


class PipelineSettings(_Strict):
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 128  # pages fetched, extracted and loaded together
    workers: Annotated[int, Field(ge=1, le=256)] | None = None  # extraction processes; None: one per CPU
    hold_db_s: Annotated[float, Field(ge=0, le=600)] = 5.0  # longest the writer keeps the DuckDB file between loads
    lock_wait_s: Annotated[float, Field(ge=0, le=86_400)] = 600.0  # how long an ingest waits for another to finish
    # Past this many seconds a run starts no new batch of pages; what it did
    # not start stays queued for the next run. Under the 30-minute schedule.
    max_run_s: Annotated[float, Field(gt=0, le=7 * 86_400)] = 1500.0
    # Where extraction batches run: "local" (a process pool of `workers`) or
    # "dask" (Prefect tasks on a Dask cluster: `dask_address`, or a
    # temporary LocalCluster of `workers` processes when it is not set).
    task_runner: Literal["local", "dask"] = "local"
    dask_address: str | None = None  # e.g. "tcp://10.0.0.5:8786"

    @model_validator(mode="after")
    def _dask(self) -> "PipelineSettings":
        if self.dask_address and self.task_runner != "dask":
            raise ValueError('dask_address is set but task_runner is not "dask"')
        return self


class RetrySettings(_Strict):
    """Retries across runs (transforms.retries): a page's delay doubles from
    page_backoff_s, a failing feed's from feed_backoff_s, both capped."""

    page_attempts: Annotated[int, Field(ge=1, le=100)] = 5  # fetches of one page before giving up
    page_backoff_s: Annotated[float, Field(ge=0)] = 900.0  # before the 2nd attempt
    feed_backoff_s: Annotated[float, Field(ge=0)] = 600.0  # after a feed's 1st failure
    max_backoff_s: Annotated[float, Field(ge=0, le=7 * 86_400)] = 86_400.0  # a dead feed is polled daily

    def policy(self):
        from transforms.retries import RetryPolicy

        return RetryPolicy(**self.model_dump())


class StorySettings(_Strict):
    """Near-duplicate detection; README explains how the defaults were chosen."""

    shingle_size: Annotated[int, Field(ge=1, le=20)] = 3  # words per shingle
    num_perm: Annotated[int, Field(ge=8, le=1024)] = 128  # MinHash permutations
    bands: Annotated[int, Field(ge=1, le=1024)] = 42  # LSH bands ...
    rows: Annotated[int, Field(ge=1, le=1024)] = 3  # ... of this many values each
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5  # estimated Jaccard for one story
    containment: Annotated[float, Field(gt=0, le=1)] = 0.8  # share of a shorter copy found in the root
    min_shingles: Annotated[int, Field(ge=1)] = 10  # shorter bodies match only exactly
    window_days: Annotated[int, Field(ge=0, le=36_500)] = 30  # roots first seen this close to a copy; 0 = any

    @model_validator(mode="after")
    def _fits(self) -> "StorySettings":
        # Every band takes `rows` values of the signature: they must all exist.
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands × rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def params(self):
        # Imported here: datasketch costs ~0.4 s, which `newsdesk sql` need not pay.
        from transforms.fingerprints import StoryParams

        return StoryParams(**self.model_dump())


class ArchiveSettings(_Strict):
    """The raw WARC archive of every fetched feed and page."""

    enabled: bool = True
    dir: str | None = None  # default: warc/ beside the warehouse file
    max_file_mb: Annotated[int, Field(ge=1, le=100_000)] = 100  # rotate to a new file past this size


class ScheduleSettings(_Strict):
    """When `newsdesk serve` runs the ingest (a cron line, in a time zone),
    and how often each feed is polled within those runs (transforms/schedule.py)."""

    cron: str = "*/30 * * * *"
    timezone: str = "UTC"
    min_interval_min: Annotated[int, Field(ge=0, le=10_080)] = 5  # a busy feed is polled no more often
    max_interval_min: Annotated[int, Field(ge=1, le=10_080)] = 1_440  # a quiet feed no less often
    default_interval_min: Annotated[int, Field(ge=0, le=10_080)] = 60  # a feed whose entries have no dates

    @model_validator(mode="after")
    def _bounds(self) -> "ScheduleSettings":
        if self.min_interval_min > self.max_interval_min:
            raise ValueError(f"min_interval_min ({self.min_interval_min}) is more than max_interval_min "
                             f"({self.max_interval_min})")
        return self

    def rule(self):
        from transforms.schedule import ScheduleRule

        return ScheduleRule(min_s=self.min_interval_min * 60, max_s=self.max_interval_min * 60,
                            default_s=min(max(self.default_interval_min, self.min_interval_min),
                                          self.max_interval_min) * 60)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        # Prefect's own schedule model: what it accepts is what `serve` can schedule.
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=value)
            valid = len(value.split()) == 5
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"{value!r} is not a cron expression (minute hour day-of-month month day-of-week)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as 'UTC' or 'Europe/Paris'") from None
        return value


class MaintenanceSettings(_Strict):
    """`newsdesk maintain` on a lake (warehouse/maintenance.py)."""

    keep_days: Annotated[int, Field(ge=0, le=36_500)] = 30  # snapshots younger stay readable with --as-of
    # Files no snapshot needs are deleted once unreferenced this long: a
    # query that started before they were replaced may still be reading them.
    grace_hours: Annotated[float, Field(ge=0, le=8_760)] = 24


class WorkerSettings(_Strict):
    """Workers sharing a lake (docs/workers.md): each leases due feeds in
    batches, and a backfill's WARC files one at a time."""

    feeds_per_lease: Annotated[int, Field(ge=1, le=100_000)] = 200  # due feeds a worker takes at once
    # A lease not ended by its recorded poll (the worker died) passes to another worker after this.
    lease_s: Annotated[float, Field(ge=10, le=86_400)] = 900.0
    warc_lease_s: Annotated[float, Field(ge=10, le=7 * 86_400)] = 3600.0  # the same for one WARC file


def worker_name() -> str:
    """Who this worker is, on runs and leases: $NEWSDESK_WORKER, else host:pid."""
    import socket

    return os.environ.get("NEWSDESK_WORKER") or f"{socket.gethostname()}:{os.getpid()}"


class FeedSettings(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[\w.-]+$")]
    url: str
    language: str | None = None
    tags: tuple[str, ...] = ()
    # This feed's own poll interval, over its history and [schedule]'s bounds; 0: every run.
    interval_min: Annotated[int | None, Field(ge=0, le=10_080)] = None

    @field_validator("name", mode="before")
    @classmethod
    def _nfc(cls, value):
        # `café` typed on two systems may arrive composed or decomposed: one name.
        return unicodedata.normalize("NFC", value) if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        _no_control(value)
        scheme = urlsplit(value).scheme
        if scheme not in ("http", "https", "file"):
            raise ValueError(f"{value!r}: only http, https and file URLs are feeds")
        if scheme in ("http", "https") and not urlsplit(value).hostname:
            raise ValueError(f"{value!r} has no host")
        return value


class Settings(_Strict):
    # Optional: feeds may come from OPML alone (`newsdesk feeds import`).
    feeds: tuple[FeedSettings, ...] = ()
    fetch: FetchSettings = FetchSettings()
    pipeline: PipelineSettings = PipelineSettings()
    retry: RetrySettings = RetrySettings()
    # Named [stories]: it sets the near-duplicate rule (transforms/stories.py,
    # fingerprints.py); exact duplicates (transforms/dedupe.py) take no settings.
    # [dedupe], its old name, is still read.
    stories: StorySettings = Field(StorySettings(), validation_alias=AliasChoices("stories", "dedupe"))
    archive: ArchiveSettings = ArchiveSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    workers: WorkerSettings = WorkerSettings()

    @field_validator("feeds")
    @classmethod
    def _unique(cls, feeds: tuple[FeedSettings, ...]) -> tuple[FeedSettings, ...]:
        names = [f.name for f in feeds]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feed names must be unique, repeated: {', '.join(dupes)}")
        return feeds


def _resolve_file_url(url: str, base: Path) -> str:
    """`file:feeds/x.xml` is relative to the sources file; make it absolute."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return url
    path = Path(parts.path)
    if not path.is_absolute():
        path = (base / path).resolve()
    return path.as_uri()


def _describe(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid settings"]
    for err in exc.errors():
        key = ""
        for part in err["loc"]:
            key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {key or '(top level)'}: {message}")
    return "\n".join(lines)


# A sources file of 10,000 feeds is ~2 MB. The cap keeps a wrong path
# (a log, a disk image) from being read whole into memory.
MAX_SOURCES_BYTES = 4 * 1024 * 1024

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(path: Path, mode: int) -> SettingsError:
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return SettingsError(f"{path}: not a regular file ({kind}); the sources file must be a TOML file")


def _read_sources(path: Path) -> str:
    """The sources file's text, read only if it is a regular file of at most
    MAX_SOURCES_BYTES: a FIFO would block the read, /dev/zero never end it,
    and opening some devices does something."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode)
    # O_NONBLOCK: if a FIFO was put in its place since the stat, opening it
    # does not wait for a writer; fstat then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        data = f.read(MAX_SOURCES_BYTES + 1)
    if len(data) > MAX_SOURCES_BYTES:
        raise SettingsError(f"{path}: larger than {MAX_SOURCES_BYTES // (1024 * 1024)} MB, too large for a "
                            f"sources file (is it the right file?)")
    return data.decode("utf-8")


def load_settings(sources: str | os.PathLike | None = None) -> Settings:
    """Read the sources file: the argument, else NEWSDESK_SOURCES, else the seeds."""
    path = default_sources_path(sources)
    try:
        data = tomllib.loads(_read_sources(path))
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such sources file") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the sources file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    for feed in data.get("feeds", []) if isinstance(data.get("feeds"), list) else []:
        if isinstance(feed, dict) and isinstance(feed.get("url"), str):
            feed["url"] = _resolve_file_url(feed["url"], path.parent)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, str(path))) from None


def default_sources_path(sources: str | os.PathLike | None = None) -> Path:
    """The sources file: the argument, else NEWSDESK_SOURCES, else the seeds."""
    return Path(sources or os.environ.get("NEWSDESK_SOURCES") or DEFAULT_SOURCES).expanduser()


def with_registry(settings: Settings, registry: Sequence) -> Settings:
    """The sources file's feeds, then the registry's OPML feeds
    (`transforms.opml.RegistryFeed`) whose names the file does not use."""
    if not registry:
        return settings
    names = {f.name for f in settings.feeds}
    # Validated when imported: built without validating again (100,000 feeds).
    extra = tuple(FeedSettings.model_construct(name=f.name, url=f.url, language=f.language, tags=tuple(f.tags),
                                               interval_min=None)
                  for f in registry if f.name not in names)
    return settings.model_copy(update={"feeds": settings.feeds + extra})


def select_feeds(settings: Settings, wanted: Sequence[str] | None) -> Settings:
    """Keep the feeds named in `wanted`, or carrying one of its tags."""
    if not wanted:
        return settings
    known = {f.name for f in settings.feeds} | {t for f in settings.feeds for t in f.tags}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise SettingsError(f"no feed is named or tagged {', '.join(map(repr, unknown))}; "
                            f"feeds: {', '.join(sorted(f.name for f in settings.feeds))}")
    chosen = tuple(f for f in settings.feeds if f.name in wanted or set(f.tags) & set(wanted))
    return settings.model_copy(update={"feeds": chosen})


def default_db_path(db: str | os.PathLike | None = None) -> Path:
    """The warehouse file: the argument, else NEWSDESK_DB, else ./newsdesk.duckdb."""
    return Path(db or os.environ.get("NEWSDESK_DB") or DEFAULT_DB).expanduser()


def default_db(db: str | os.PathLike | None = None) -> str | Path:
    """What `--db` names, a lake's ATTACH string (`ducklake:...`) as it is,
    else the warehouse file as `default_db_path` finds it."""
    value = db or os.environ.get("NEWSDESK_DB")
    if value is not None and str(value).startswith("ducklake:"):
        return str(value)
    return default_db_path(db)
