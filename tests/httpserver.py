"""A small real HTTP server on 127.0.0.1 for tests: routes to fixed responses
or to handler functions, and a log of every request it received."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # the status line's reason phrase; None: the standard one


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    started: float
    finished: float = 0.0
    client: tuple = ()  # (address, port): one per connection


class LocalServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, Reply | Callable[[Request], Reply]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                req = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic(),
                              client=tuple(self.client_address))
                with owner._lock:
                    owner.requests.append(req)
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    route = owner.routes.get(self.path) or owner.routes.get(self.path.split("?")[0])
                    try:
                        reply = Reply(404, b"not found") if route is None else (route(req) if callable(route) else route)
                    except ConnectionResetError:
                        # A scripted reset: close the socket without a response.
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.send_response(reply.status, reply.reason)
                    headers = {"Content-Length": str(len(reply.body)), **reply.headers}
                    if headers.get("Content-Length") is None:
                        # No length: the body ends when the connection closes.
                        del headers["Content-Length"]
                        self.close_connection = True
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if reply.body and "X-Drip" in reply.headers:
                        for i in range(len(reply.body)):
                            self.wfile.write(reply.body[i:i + 1])
                            self.wfile.flush()
                            time.sleep(0.01)
                    elif reply.body:
                        self.wfile.write(reply.body)
                finally:
                    req.finished = time.monotonic()
                    with owner._lock:
                        owner.in_flight -= 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that hung up early (timeouts, size caps) is expected here

        self._httpd = Server((host, port), Handler)
        self.port = self._httpd.server_address[1]
        self.base = f"http://{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, body: bytes | str | Callable = b"", status: int = 200,
              content_type: str = "text/html; charset=utf-8", headers: dict[str, str] | None = None) -> str:
        if callable(body):
            self.routes[path] = body
        else:
            data = body.encode("utf-8") if isinstance(body, str) else body
            self.routes[path] = Reply(status, data, {"Content-Type": content_type, **(headers or {})})
        return self.url(path)

    def hits(self, prefix: str = "/") -> list[Request]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def __enter__(self) -> "LocalServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
