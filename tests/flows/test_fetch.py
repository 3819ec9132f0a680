"""The fetcher against a real HTTP server on 127.0.0.1 (no Prefect needed)."""

import asyncio
import gzip
import time

import pytest

from flows.fetch import Fetcher
from flows.settings import FetchSettings
from tests.httpserver import Reply
from transforms.errors import FetchError

LOOPBACK = dict(allow_private_networks=("127.0.0.0/8",), per_host_delay_s=0, retry_backoff_s=0.01, timeout_s=2,
                total_timeout_s=5, user_agent="newsdesk-tests/1.0")


def fetch(url, settings=None, **kw):
    async def go():
        async with Fetcher(settings or FetchSettings(**LOOPBACK)) as f:
            return await f.get(url, **kw)
    return asyncio.run(go())


def fetch_error(url, settings=None, **kw) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch(url, settings, **kw)
    return info.value


def test_plain_get_sends_user_agent(server):
    url = server.route("/a", "<p>hi</p>", content_type="text/html; charset=ISO-8859-1")
    resp = fetch(url)
    assert resp.status == 200 and resp.body == b"<p>hi</p>"
    assert resp.content_type == "text/html" and resp.charset == "ISO-8859-1"
    assert server.requests[0].headers["user-agent"] == "newsdesk-tests/1.0"


def test_loopback_refused_unless_allowed(server):
    url = server.route("/a", "x")
    err = fetch_error(url, FetchSettings(per_host_delay_s=0))
    assert err.reason == "blocked_address" and err.url == url and err.stage == "fetch"
    assert server.requests == []  # refused before connecting


@pytest.mark.parametrize("target", ["http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://0.0.0.0/"])
def test_redirect_to_private_address_refused_by_the_guard(server, target):
    url = server.route("/r", b"", status=302, headers={"Location": target})
    started = time.monotonic()
    err = fetch_error(url)
    assert err.reason == "blocked_address"
    assert time.monotonic() - started < 1  # refused, not timed out


def test_redirects_followed_and_loops_detected(server):
    server.route("/final", "done")
    server.route("/hop", b"", status=301, headers={"Location": "/final"})
    resp = fetch(server.url("/hop"))
    assert resp.final_url == server.url("/final") and resp.body == b"done"
    server.route("/loop1", b"", status=302, headers={"Location": "/loop2"})
    server.route("/loop2", b"", status=302, headers={"Location": "/loop1"})
    assert fetch_error(server.url("/loop1")).reason == "redirect_loop"
    server.route("/tofile", b"", status=302, headers={"Location": "file:///etc/passwd"})
    assert fetch_error(server.url("/tofile")).reason == "redirect_not_allowed"


@pytest.mark.parametrize("location", [
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PGgxPm93bmVkPC9oMT4=",
    "file:///etc/passwd",
    "FILE:/etc/passwd",
    "javascript:alert(document.cookie)",
    "mailto:desk@example.com",
    "ftp://127.0.0.1/x",
])
def test_redirect_to_a_scheme_other_than_http_is_refused_not_followed(server, location):
    url = server.route("/r", b"", status=302, headers={"Location": location})
    # allow_file (a local feed's page) does not let a server's redirect reach a file.
    err = fetch_error(url, allow_file=True)
    assert err.reason == "redirect_not_allowed" and not err.transient and err.url == url, err
    scheme = location.split(":")[0].lower()
    assert f"{scheme}:" in err.message and location in err.message, err.message
    assert [r.path for r in server.requests] == ["/r"]  # neither retried nor followed anywhere


def test_size_caps(server):
    big = server.route("/big", b"x" * 5000)
    assert fetch_error(big, FetchSettings(**LOOPBACK, max_bytes=1000)).reason == "too_large"
    unsized = server.route("/unsized", b"y" * 5000, headers={"Content-Length": None})
    assert fetch_error(unsized, FetchSettings(**LOOPBACK, max_bytes=1000)).reason == "too_large"
    bomb = gzip.compress(b"\0" * 5_000_000)
    url = server.route("/bomb", bomb, headers={"Content-Encoding": "gzip"})
    assert len(bomb) < 10_000
    assert fetch_error(url, FetchSettings(**LOOPBACK, max_bytes=100_000)).reason == "too_large"


def test_retries_transient_then_succeeds_and_gives_up_on_404(server):
    calls = []

    def flaky(req):
        calls.append(req)
        return Reply(503, b"busy") if len(calls) < 3 else Reply(200, b"ok", {"Content-Type": "text/plain"})

    server.route("/flaky", flaky)
    assert fetch(server.url("/flaky")).body == b"ok" and len(calls) == 3
    err = fetch_error(server.url("/missing"))
    assert err.reason == "http_404" and not err.transient
    assert len(server.hits("/missing")) == 1  # a 404 is not retried


def test_retry_after_is_obeyed(server):
    calls = []

    def limited(req):
        calls.append(time.monotonic())
        return Reply(429, b"", {"Retry-After": "1"}) if len(calls) == 1 else Reply(200, b"ok")

    server.route("/limited", limited)
    assert fetch(server.url("/limited")).body == b"ok"
    assert calls[1] - calls[0] >= 0.95


def test_timeout_is_transient(server):
    def stall(req):
        time.sleep(1.5)
        return Reply(200, b"late")

    server.route("/stall", stall)
    err = fetch_error(server.url("/stall"), FetchSettings(**{**LOOPBACK, "timeout_s": 0.3, "retries": 0}))
    assert err.reason == "timeout" and err.transient


def test_per_host_concurrency_and_delay(server):
    def slow(req):
        time.sleep(0.2)
        return Reply(200, b"ok")

    server.route("/slow", slow)

    async def many(settings):
        async with Fetcher(settings) as f:
            await asyncio.gather(*(f.get(server.url("/slow")) for _ in range(6)))

    asyncio.run(many(FetchSettings(**{**LOOPBACK, "per_host_concurrency": 2})))
    assert server.max_in_flight == 2
    server.requests.clear()
    asyncio.run(many(FetchSettings(**{**LOOPBACK, "per_host_concurrency": 4, "per_host_delay_s": 0.15})))
    starts = sorted(r.started for r in server.requests)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= 0.13


def test_file_urls_only_when_allowed(tmp_path):
    page = tmp_path / "a.html"
    page.write_text("<p>x</p>")
    assert fetch_error(page.as_uri()).reason == "scheme_not_allowed"
    resp = fetch(page.as_uri(), allow_file=True)
    assert resp.body == b"<p>x</p>" and resp.content_type == "text/html"
    again = fetch(page.as_uri(), allow_file=True, last_modified=resp.headers["last-modified"])
    assert again.not_modified
    assert fetch_error((tmp_path / "nope.html").as_uri(), allow_file=True).reason == "file_not_found"
    assert fetch_error("ftp://example.com/x").reason == "scheme_not_allowed"


def test_robots_txt_obeyed_once_per_host_with_crawl_delay(server):
    server.route("/robots.txt", "User-agent: *\nDisallow: /private/\nCrawl-delay: 1\n", content_type="text/plain")
    server.route("/private/a.html", "secret")
    server.route("/public/a.html", "open")
    server.route("/public/b.html", "open")

    async def go():
        async with Fetcher(FetchSettings(**LOOPBACK)) as f:
            with pytest.raises(FetchError) as info:
                await f.get_page(server.url("/private/a.html"))
            assert info.value.reason == "robots_disallowed" and not info.value.transient
            await f.get_page(server.url("/public/a.html"))
            await f.get_page(server.url("/public/b.html"))

    asyncio.run(go())
    assert len(server.hits("/robots.txt")) == 1
    assert server.hits("/private/") == []
    starts = [r.started for r in server.hits("/public/")]
    assert starts[1] - starts[0] >= 0.9  # Crawl-delay raised the per-host gap from 0


def test_gzip_bomb_without_length_stops_within_a_chunk_of_max_bytes(server):
    """64 MB of zeros in ~64 kB of gzip, no Content-Length: decoding stops at
    max_bytes, rather than inflating a whole network read (~64 MB) first."""
    import tracemalloc

    bomb = gzip.compress(b"\0" * 64_000_000, compresslevel=9)
    url = server.route("/bomb", bomb, headers={"Content-Encoding": "gzip", "Content-Length": None})
    tracemalloc.start()
    try:
        err = fetch_error(url, FetchSettings(**LOOPBACK, max_bytes=100_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.reason == "too_large"
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB while decoding"


def test_deflate_and_gzip_bodies_decode(server):
    import zlib

    text = b"<p>" + b"hello " * 2000 + b"</p>"
    url = server.route("/gz", gzip.compress(text), headers={"Content-Encoding": "gzip", "Content-Length": None})
    assert fetch(url).body == text
    url = server.route("/zlib", zlib.compress(text), headers={"Content-Encoding": "deflate"})
    assert fetch(url).body == text
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    url = server.route("/raw", raw.compress(text) + raw.flush(), headers={"Content-Encoding": "deflate"})
    assert fetch(url).body == text
    url = server.route("/br", b"xx", headers={"Content-Encoding": "br"})
    assert fetch_error(url).reason == "bad_content_encoding"
    url = server.route("/broken", b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert fetch_error(url).reason == "bad_content_encoding"


@pytest.mark.parametrize("location", ["http://0177.0.0.1/", "http://[::1", "http://x.example/\x01", "http://127.1/"])
def test_unparsable_redirect_is_a_permanent_failure(server, location):
    url = server.route("/r", b"", status=302, headers={"Location": location})
    err = fetch_error(url)
    assert err.reason == "bad_redirect" and not err.transient, err
    assert len(server.hits("/r")) == 1  # not retried


def test_control_characters_in_a_reason_phrase_are_not_kept(server):
    """The reason phrase is the server's text: it becomes the failure's
    message (stored, logged by the run), so no terminal control survives."""
    server.routes["/busy"] = Reply(404, b"", reason="Gone \x1b[31mred\x07 \x1b]0;title\x07")
    err = fetch_error(server.url("/busy"))
    assert err.reason == "http_404", err
    assert err.message == "Gone [31mred ]0;title" and "\x1b" not in str(err) and "\x07" not in str(err)


def test_invalid_response_header_is_a_permanent_failure(server):
    url = server.route("/h", "x", headers={"Bad Header": "x"})
    err = fetch_error(url)
    assert err.reason == "bad_response_header" and not err.transient, err
    assert len(server.hits("/h")) == 1


def _page(server, path, settings=None):
    async def go():
        async with Fetcher(settings or FetchSettings(**LOOPBACK)) as f:
            return await f.get_page(server.url(path))
    return asyncio.run(go())


def test_robots_txt_5xx_disallows_the_host_for_the_run(server):
    server.route("/robots.txt", "down", status=503)
    server.route("/a.html", "page")
    with pytest.raises(FetchError) as info:
        _page(server, "/a.html", FetchSettings(**{**LOOPBACK, "retries": 0}))
    assert info.value.reason == "robots_unavailable" and info.value.transient
    assert server.hits("/a.html") == []


def test_robots_txt_unreachable_disallows_and_4xx_allows(server):
    server.route("/robots.txt", "", status=302, headers={"Location": "http://127.0.0.1:1/robots.txt"})
    server.route("/a.html", "page")
    with pytest.raises(FetchError) as info:
        _page(server, "/a.html", FetchSettings(**{**LOOPBACK, "retries": 0}))
    assert info.value.reason == "robots_unavailable"
    server.route("/robots.txt", "gone", status=410)
    assert _page(server, "/a.html").body == b"page"


def test_robots_txt_redirects_followed_five_times(server):
    for n in range(5):
        server.route(f"/hop{n}", b"", status=301, headers={"Location": f"/hop{n + 1}"})
    server.route("/hop5", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    server.route("/robots.txt", b"", status=301, headers={"Location": "/hop1"})  # 5 redirects in all
    server.route("/private/a.html", "secret")
    with pytest.raises(FetchError) as info:
        _page(server, "/private/a.html", FetchSettings(**{**LOOPBACK, "max_redirects": 0}))
    assert info.value.reason == "robots_disallowed"
    assert server.hits("/private/") == []


def test_304s_keep_their_connection_for_the_next_poll(server):
    """Most polls are 304: each must not cost a new connection (a TLS handshake on https)."""
    url = server.route("/feed", b"", status=304, headers={"ETag": '"v1"'})
    other = server.route("/other", "<p>hi</p>")

    async def go():
        async with Fetcher(FetchSettings(**LOOPBACK)) as f:
            for _ in range(3):
                assert (await f.get(url, etag='"v1"')).not_modified
            await f.get(other)
    asyncio.run(go())
    assert len({r.client for r in server.requests}) == 1, [r.client for r in server.requests]
