"""HTTP and file fetching: polite, bounded and guarded.

One async httpx client per run. Every request goes through the same gate:
the SSRF guard (each hop resolved and checked before connecting), a global and
a per-host concurrency limit, a minimum delay between requests to one host,
timeouts, a size cap on the decoded body, retries with backoff for transient
failures. Failures raise `FetchError` with the URL and a reason code; they are
never swallowed here.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import mimetypes
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from flows.settings import FetchSettings
from transforms.errors import FetchError

_REDIRECTS = {301, 302, 303, 307, 308}
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"


@dataclass(frozen=True, slots=True)
class Response:
    url: str  # as requested
    final_url: str  # after redirects
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip("\"'")
        return None


@dataclass(slots=True)
class _HostGate:
    """Per-host politeness: at most N requests at once, and a gap between starts."""

    slots: asyncio.Semaphore
    delay_s: float
    next_start: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def wait_turn(self) -> None:
        async with self.lock:
            now = time.monotonic()
            wait = self.next_start - now
            self.next_start = max(now, self.next_start) + self.delay_s
        if wait > 0:
            await asyncio.sleep(wait)


class Fetcher:
    """Fetch http(s) and file: URLs under the run's fetch settings."""

    def __init__(self, settings: FetchSettings):
        self.settings = settings
        self._allowed = settings.allowed_networks()
        self._global = asyncio.Semaphore(settings.max_concurrency)
        self._hosts: dict[str, _HostGate] = {}
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(settings.timeout_s),
            headers={"User-Agent": settings.user_agent},
            limits=httpx.Limits(max_connections=settings.max_concurrency, max_keepalive_connections=settings.max_concurrency),
            trust_env=False,  # never route through a proxy from the environment
        )
        self._robots: dict[str, RobotFileParser | None] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> "Fetcher":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    # -- public -----------------------------------------------------------

    async def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        allow_file: bool = False,
        accept: str = "*/*",
    ) -> Response:
        """GET one URL, following redirects, retrying transient failures."""
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            if not allow_file:
                raise FetchError(url, "scheme_not_allowed", "file: URLs are only read for feeds listed in the sources file and their links")
            return await asyncio.to_thread(_read_file, url, self.settings.max_bytes, last_modified)
        if scheme not in ("http", "https"):
            raise FetchError(url, "scheme_not_allowed", f"{scheme or 'no'} scheme")
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        attempt = 0
        while True:
            try:
                return await self._follow(url, headers)
            except (ValueError, httpx.InvalidURL) as exc:
                # A URL no request can be built for (port out of range, a host
                # IDNA cannot encode ...): a permanent failure of this URL only.
                raise FetchError(url, "bad_url", f"{type(exc).__name__}: {exc}") from None
            except FetchError as exc:
                if not exc.transient or attempt >= self.settings.retries:
                    raise
                backoff = self.settings.retry_backoff_s * (2**attempt) * (0.5 + random.random())
                delay = exc.retry_after if exc.retry_after is not None else backoff
                await asyncio.sleep(min(delay, self.settings.max_retry_after_s))
                attempt += 1

    async def get_page(self, url: str, *, allow_file: bool = False) -> Response:
        """GET an article page: robots.txt is asked first when configured."""
        if self.settings.obey_robots and urlsplit(url).scheme.lower() in ("http", "https"):
            if not await self._robots_allow(url):
                raise FetchError(url, "robots_disallowed", "robots.txt disallows this URL for our user agent")
        return await self.get(url, allow_file=allow_file, accept=_PAGE_ACCEPT)

    async def _robots_allow(self, url: str) -> bool:
        """robots.txt is fetched once per host per run. A missing one (4xx)
        allows everything; one we cannot get (5xx, timeout) allows too, and
        the page fetch then meets the same trouble and is retried later."""
        parts = urlsplit(url)
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:
            if origin not in self._robots:
                parser = None
                try:
                    resp = await self.get(origin + "/robots.txt", accept="text/plain")
                    parser = RobotFileParser()
                    parser.parse(resp.body.decode("utf-8", errors="replace").splitlines())
                    delay = parser.crawl_delay(self.settings.user_agent)
                    if delay:
                        # Crawl-delay is a floor on our own per-host gap, capped.
                        gate = self._gate((parts.hostname or "").lower())
                        gate.delay_s = max(gate.delay_s, min(float(delay), self.settings.max_crawl_delay_s))
                except FetchError:
                    parser = None
                self._robots[origin] = parser
        parser = self._robots[origin]
        return parser is None or parser.can_fetch(self.settings.user_agent, url)

    # -- internals --------------------------------------------------------

    async def _follow(self, url: str, headers: dict[str, str]) -> Response:
        seen = {url}
        current = url
        for _hop in range(self.settings.max_redirects + 1):
            try:
                status, resp_headers, body = await self._request(current, headers)
            except FetchError as exc:
                if current == url:
                    raise
                # Recorded against the URL we were asked for, naming the hop.
                raise FetchError(url, exc.reason, f"{exc.message} (at redirect {current})",
                                 transient=exc.transient, retry_after=exc.retry_after) from exc
            if status in _REDIRECTS and "location" in resp_headers:
                target = urljoin(current, resp_headers["location"])
                if urlsplit(target).scheme.lower() not in ("http", "https"):
                    raise FetchError(url, "redirect_not_allowed", f"redirect to {target}")
                if target in seen:
                    raise FetchError(url, "redirect_loop", f"redirect loop at {target}")
                seen.add(target)
                current = target
                continue
            return Response(url=url, final_url=current, status=status, headers=resp_headers, body=body)
        raise FetchError(url, "too_many_redirects", f"more than {self.settings.max_redirects} redirects")

    def _gate(self, host: str) -> _HostGate:
        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = _HostGate(
                asyncio.Semaphore(self.settings.per_host_concurrency), self.settings.per_host_delay_s
            )
        return gate

    async def _request(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchError(url, "bad_url", "no host")
        await self._guard(url, host, parts.port or (443 if parts.scheme == "https" else 80))
        gate = self._gate(host)
        # Host slot first, then a global one: requests queued for a slow host
        # must not hold global slots that other hosts could use.
        async with gate.slots:
            await gate.wait_turn()
            async with self._global:
                return await self._timed(url, headers)

    async def _timed(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """One request with the total timeout, transport errors as FetchError."""
        try:
            async with asyncio.timeout(self.settings.total_timeout_s):
                return await self._stream(url, headers)
        except TimeoutError:
            raise FetchError(url, "timeout", f"no complete response in {self.settings.total_timeout_s:g} s", transient=True) from None
        except httpx.TimeoutException as exc:
            raise FetchError(url, "timeout", type(exc).__name__, transient=True) from None
        except httpx.DecodingError as exc:
            raise FetchError(url, "bad_content_encoding", str(exc)) from None
        except (httpx.TransportError, OSError) as exc:
            raise FetchError(url, "connection_error", f"{type(exc).__name__}: {exc}", transient=True) from None

    async def _stream(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        limit = self.settings.max_bytes
        async with self._client.stream("GET", url, headers=headers) as resp:
            resp_headers = {k.lower(): v for k, v in resp.headers.items()}
            status = resp.status_code
            if status in _REDIRECTS or status == 304:
                return status, resp_headers, b""
            if status >= 400:
                raise FetchError(
                    url, f"http_{status}", resp.reason_phrase or str(status),
                    transient=status in _TRANSIENT_STATUS,
                    retry_after=_retry_after(resp_headers.get("retry-after")),
                )
            declared = resp_headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise FetchError(url, "too_large", f"Content-Length {declared} > max_bytes {limit}")
            body = bytearray()
            # aiter_bytes yields decoded bytes, so the cap also stops a
            # compression bomb once it has inflated past max_bytes.
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise FetchError(url, "too_large", f"body exceeds max_bytes {limit}")
            return status, resp_headers, bytes(body)

    async def _guard(self, url: str, host: str, port: int) -> None:
        """Refuse before connecting when the host resolves to an address that
        is not public (loopback, private, link-local, multicast, reserved)
        unless an allowed network covers it."""
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise FetchError(url, "dns_error", f"{host}: {exc.strerror}", transient=True) from None
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        for address in addresses:
            if not address.is_global or address.is_multicast:
                if not any(address in net for net in self._allowed):
                    raise FetchError(url, "blocked_address", f"{host} resolves to {address}, which is not public and not in allow_private_networks")


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _read_file(url: str, max_bytes: int, last_modified: str | None) -> Response:
    """A file: URL as if it were served: its mtime is its Last-Modified, so an
    unchanged feed file costs no parsing on the next run."""
    path = Path(unquote(urlsplit(url).path))
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FetchError(url, "file_not_found", str(path)) from None
    except OSError as exc:
        raise FetchError(url, "file_error", str(exc)) from None
    modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    if last_modified and last_modified == modified:
        return Response(url, url, 304, {"last-modified": modified}, b"")
    if stat.st_size > max_bytes:
        raise FetchError(url, "too_large", f"{stat.st_size} bytes > max_bytes {max_bytes}")
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Response(url, url, 200, {"content-type": guessed, "last-modified": modified}, path.read_bytes())
