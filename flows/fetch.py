"""HTTP and file fetching: polite, bounded and guarded.

One async httpx client per run. Every request goes through the same gate:
the SSRF guard, a global and a per-host concurrency limit, a minimum delay
between requests to one host, timeouts, a size cap on the decoded body,
retries with backoff for transient failures. Failures raise `FetchError` with
the URL and a reason code; they are never swallowed here.

The guard sits in the connection itself (`_GuardedBackend`, httpcore's
network backend under httpx): the host is resolved once, every address is
checked against `transforms.addresses.blocked_reason`, and the socket is
opened to one of those very addresses, so there is no second lookup for DNS
rebinding to slip into. TLS still gets the host name (SNI, certificate check)
and the request its Host header, because httpcore hands the backend only the
TCP connect.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import mimetypes
import random
import socket
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx

from flows.settings import FetchSettings
from transforms.addresses import Network, blocked_reason, url_problem
from transforms.errors import FetchError, NewsdeskError

if TYPE_CHECKING:
    from warehouse.host_turns import HostTurns

_REDIRECTS = {301, 302, 303, 307, 308}
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
_ROBOTS_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five
_LOCATION = "newsdesk.location"  # response extension holding a redirect's Location (see _keep_location)
_SHOWN_URL_CHARS = 200  # of a refused redirect target in a message: a data: URL can be kilobytes


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


class BlockedAddress(NewsdeskError):
    """The guard refused every connection to this host: raised before connecting."""

    def __init__(self, host: str, address, why: str):
        super().__init__(f"{host} resolves to {address}: {why}, and allow_private_networks does not cover it")


class ResolveFailed(NewsdeskError):
    """The host name did not resolve."""


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's TCP connect, resolving the host itself and connecting only
    to addresses `blocked_reason` lets through: the address checked is the
    address connected to. One blocked address refuses the host, as a name
    that resolves to a public and a private address is an attack or a mistake."""

    def __init__(self, allowed: tuple[Network, ...]):
        self._allowed = allowed
        self._inner = httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int) -> list:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ResolveFailed(f"{host}: {exc.strerror}") from None
        found = []
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if address not in found:
                found.append(address)
        return found

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = await self._resolve(host, port)
        for address in addresses:
            why = blocked_reason(address, self._allowed)
            if why:
                raise BlockedAddress(host, address, why)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host}: no address")

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise BlockedAddress(path, "a unix socket", "not a network address")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _keep_location(response: httpx.Response) -> None:
    """Take a redirect's Location out of httpx's sight. Even with
    follow_redirects off, httpx builds the next request of every redirect
    and raises on a Location it cannot build one for (`data:text/html,x`,
    `javascript:...`, `mailto:...`): the page would fail as a `bad_url` of
    its own. Held aside, every hop is decided by `Fetcher._follow` alone."""
    if response.status_code in _REDIRECTS and "location" in response.headers:
        response.extensions[_LOCATION] = response.headers["location"]
        del response.headers["location"]


def _guarded_transport(settings: FetchSettings) -> httpx.AsyncHTTPTransport:
    """httpx's transport over a connection pool whose every connection goes
    through the guard. httpx 0.28 takes no network backend, so the pool it
    built is swapped for one built the same way with ours (httpx is pinned;
    tests/flows/test_guard.py fails if this stops guarding)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=settings.max_concurrency,
        max_keepalive_connections=settings.max_concurrency,
        keepalive_expiry=5.0,
        network_backend=_GuardedBackend(settings.allowed_networks()),
    )
    return transport


class _Inflater:
    """Content-Encoding undone a bounded piece at a time: never more than
    `room` decoded bytes out of one read, however much a chunk inflates to
    (httpx's own decoder inflates a whole network read at once, ~64 MB for
    64 kB of a gzip bomb)."""

    def __init__(self, encoding: str):
        coding = encoding.strip().lower()
        self._deflate = coding == "deflate"
        if coding in ("", "identity"):
            self._z = None
        elif coding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self._deflate:
            self._z = zlib.decompressobj()
        else:
            raise zlib.error(f"unsupported Content-Encoding {encoding!r}")
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        """Decoded bytes of `data`, at most `room` of them; when it returns
        exactly `room`, the caller is over its cap and stops reading."""
        if self._z is None:
            return data[:room]
        if self._deflate and not self._started:
            try:
                out = self._z.decompress(data, room)
            except zlib.error:  # "deflate" sent raw, without the zlib header, as some servers do
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                out = self._z.decompress(data, room)
        else:
            out = self._z.decompress(data, room)
        self._started = True
        while self._z.unconsumed_tail and len(out) < room:
            out += self._z.decompress(self._z.unconsumed_tail, room - len(out))
        return out

    def finish(self, room: int) -> bytes:
        return b"" if self._z is None else self._z.flush()[:room]


_KEEP_READ = 65_536  # a redirect's body up to this size is read, to keep its connection


class Fetcher:
    """Fetch http(s) and file: URLs under the run's fetch settings."""

    def __init__(self, settings: FetchSettings, shared: "HostTurns | None" = None):
        self.settings = settings
        # On a lake, the per-host gate shared with the other workers (warehouse/host_turns.py).
        self._shared = shared
        self._global = asyncio.Semaphore(settings.max_concurrency)
        self._hosts: dict[str, _HostGate] = {}
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(settings.timeout_s),
            # Only what _Inflater decodes, a bounded piece at a time.
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
            transport=_guarded_transport(settings),
            trust_env=False,  # never route through a proxy from the environment
            event_hooks={"response": [_keep_location]},
        )
        self._robots: dict[str, RobotFileParser | FetchError | None] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> "Fetcher":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()
        if self._shared is not None:
            await self._shared.close()

    # -- public -----------------------------------------------------------

    async def get(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        allow_file: bool = False,
        accept: str = "*/*",
        max_redirects: int | None = None,
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
                return await self._follow(url, headers, max_redirects)
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
        """robots.txt, fetched once per host per run, read per RFC 9309: a
        4xx (there is none) allows everything; a 5xx, a 408/429, a timeout or
        no connection disallows everything for this run (the pages are
        retried in a later run); five redirects are followed, and more count
        as "unavailable" like a 4xx. Other permanent failures (a blocked
        address) also read as "no rules": the page fetch meets them itself."""
        parts = urlsplit(url)
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:
            if origin not in self._robots:
                self._robots[origin] = await self._fetch_robots(origin, (parts.hostname or "").lower())
        rules = self._robots[origin]
        if isinstance(rules, FetchError):
            raise FetchError(url, "robots_unavailable", f"robots.txt could not be read ({rules.reason}): "
                             "the host is not crawled this run", transient=True)
        return rules is None or rules.can_fetch(self.settings.user_agent, url)

    async def _fetch_robots(self, origin: str, host: str) -> RobotFileParser | FetchError | None:
        """The host's rules; None for "no rules"; the error when unreachable."""
        try:
            resp = await self.get(origin + "/robots.txt", accept="text/plain", max_redirects=_ROBOTS_REDIRECTS)
        except FetchError as exc:
            if exc.transient or exc.reason.startswith("http_5"):
                return exc  # "unreachable": 5xx, 408/429, timeout, no connection
            # "Unavailable" (4xx, past five redirects) and the rest: no rules.
            # A blocked or malformed robots.txt URL leaves the page to meet
            # the guard itself, and fail for its own reason.
            return None
        parser = RobotFileParser()
        parser.parse(resp.body.decode("utf-8", errors="replace").splitlines())
        delay = parser.crawl_delay(self.settings.user_agent)
        if delay:
            # Crawl-delay is a floor on our own per-host gap, capped.
            gate = self._gate(host)
            gate.delay_s = max(gate.delay_s, min(float(delay), self.settings.max_crawl_delay_s))
        return parser

    # -- internals --------------------------------------------------------

    async def _follow(self, url: str, headers: dict[str, str], max_redirects: int | None = None) -> Response:
        limit = self.settings.max_redirects if max_redirects is None else max_redirects
        seen = {url}
        current = url
        for _hop in range(limit + 1):
            try:
                status, resp_headers, body = await self._request(current, headers)
            except FetchError as exc:
                if current == url:
                    raise
                # Recorded against the URL we were asked for, naming the hop.
                reason = "bad_redirect" if exc.reason == "bad_url" else exc.reason
                raise FetchError(url, reason, f"{exc.message} (at redirect {current})",
                                 transient=exc.transient, retry_after=exc.retry_after) from exc
            if status in _REDIRECTS and "location" in resp_headers:
                location = resp_headers["location"]
                try:
                    target = urljoin(current, location)
                    scheme = urlsplit(target).scheme.lower()
                except ValueError as exc:
                    raise FetchError(url, "bad_redirect", f"unparsable Location {location!r}: {exc}") from None
                if scheme not in ("http", "https"):
                    # Never followed, whatever allow_file says: a server does not get to name a local file.
                    shown = location if len(location) <= _SHOWN_URL_CHARS else location[:_SHOWN_URL_CHARS] + "…"
                    raise FetchError(url, "redirect_not_allowed",
                                     f"redirect to a {scheme or 'schemeless'}: URL refused (only http and https are followed): {shown}")
                problem = url_problem(target)
                if problem:
                    raise FetchError(url, "bad_redirect", f"Location {location!r}: {problem}")
                if target in seen:
                    raise FetchError(url, "redirect_loop", f"redirect loop at {target}")
                seen.add(target)
                current = target
                continue
            return Response(url=url, final_url=current, status=status, headers=resp_headers, body=body)
        raise FetchError(url, "too_many_redirects", f"more than {limit} redirects")

    def _gate(self, host: str) -> _HostGate:
        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = _HostGate(
                asyncio.Semaphore(self.settings.per_host_concurrency), self.settings.per_host_delay_s
            )
        return gate

    async def _request(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        problem = url_problem(url)
        if problem:
            raise FetchError(url, "bad_url", problem)
        host = (urlsplit(url).hostname or "").lower()
        gate = self._gate(host)
        # Host slot first, then a global one: requests queued for a slow host
        # must not hold global slots that other hosts could use.
        async with gate.slots:
            if self._shared is None:
                await gate.wait_turn()
                async with self._global:
                    return await self._timed(url, headers)
            # Workers of a lake: a slot and a turn of the host across all of them.
            slot = await self._shared.acquire(host, slots=self.settings.per_host_concurrency, delay_s=gate.delay_s)
            shared, delay_s, turn = self._shared, gate.delay_s, []

            async def stamp(event: str, info: dict) -> None:
                # Around the writing of the request (its connection open): the gap
                # holds between the sends the host sees, not between bookings.
                if event.endswith("send_request_headers.started"):
                    turn.append(await shared.start(host, delay_s=delay_s))
                elif event.endswith("send_request_headers.complete") and turn:
                    await shared.sent(host, turn.pop())

            try:
                async with self._global:
                    return await self._timed(url, headers, stamp)
            finally:
                if turn:  # the request failed while being written
                    await shared.sent(host, turn.pop())
                await shared.release(host, slot)

    async def _timed(self, url: str, headers: dict[str, str], trace=None) -> tuple[int, dict[str, str], bytes]:
        """One request with the total timeout, transport errors as FetchError."""
        try:
            async with asyncio.timeout(self.settings.total_timeout_s):
                return await self._stream(url, headers, trace)
        except TimeoutError:
            raise FetchError(url, "timeout", f"no complete response in {self.settings.total_timeout_s:g} s", transient=True) from None
        except httpx.TimeoutException as exc:
            raise FetchError(url, "timeout", type(exc).__name__, transient=True) from None
        except (httpx.DecodingError, zlib.error) as exc:
            raise FetchError(url, "bad_content_encoding", str(exc)) from None
        except BlockedAddress as exc:
            raise FetchError(url, "blocked_address", str(exc)) from None
        except ResolveFailed as exc:
            raise FetchError(url, "dns_error", str(exc), transient=True) from None
        except (httpx.InvalidURL, UnicodeError) as exc:  # UnicodeError: a host name IDNA refuses
            raise FetchError(url, "bad_url", f"{type(exc).__name__}: {exc}") from None
        except httpx.LocalProtocolError as exc:
            # Our own request is malformed (a header value): no retry will help.
            raise FetchError(url, "bad_request_header", str(exc)) from None
        except httpx.RemoteProtocolError as exc:
            if "header" in str(exc).lower():  # h11: "illegal header line", "Illegal header value"
                raise FetchError(url, "bad_response_header", str(exc)) from None
            raise FetchError(url, "connection_error", f"{type(exc).__name__}: {exc}", transient=True) from None
        except (httpx.TransportError, OSError) as exc:
            raise FetchError(url, "connection_error", f"{type(exc).__name__}: {exc}", transient=True) from None

    async def _stream(self, url: str, headers: dict[str, str], trace=None) -> tuple[int, dict[str, str], bytes]:
        limit = self.settings.max_bytes
        async with self._client.stream("GET", url, headers=headers,
                                       extensions={"trace": trace} if trace else None) as resp:
            resp_headers = {k.lower(): v for k, v in resp.headers.items()}
            if _LOCATION in resp.extensions:
                resp_headers["location"] = resp.extensions[_LOCATION]
            status = resp.status_code
            if status in _REDIRECTS or status == 304:
                # Read the (empty or small) body: an unread response closes its
                # connection, and 304s, most of a poll, would each cost a new one.
                length = resp_headers.get("content-length", "")
                if status == 304 or (length.isdigit() and int(length) <= _KEEP_READ):
                    await resp.aread()
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
            inflater = _Inflater(resp_headers.get("content-encoding", ""))
            body = bytearray()
            # Raw bytes, decoded here at most one byte past the cap: a
            # compression bomb stops at max_bytes, not a chunk later.
            async for chunk in resp.aiter_raw():
                body += inflater.feed(chunk, limit + 1 - len(body))
                if len(body) > limit:
                    raise FetchError(url, "too_large", f"body exceeds max_bytes {limit}")
            body += inflater.finish(limit + 1 - len(body))
            if len(body) > limit:
                raise FetchError(url, "too_large", f"body exceeds max_bytes {limit}")
            return status, resp_headers, bytes(body)


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
