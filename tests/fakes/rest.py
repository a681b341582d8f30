"""The loopback servers under the fakes: `serve`/`shut` for any handler (the reranker's); FakeService for the
request/response fakes (Confluence, Notion, Google Drive, Telegram, WhatsApp): one thread serving whatever `handle`
answers, with every request recorded, so a test can check which calls the real client made; AioService for the
fakes that also hold websockets or streams (Slack, Teams): an aiohttp application on its own thread and event loop,
so code under test talks to it over real sockets whichever loop it runs on; `wait_until` for a test to poll a
fake's record."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from aiohttp import web


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    # A body too big to hold: its declared length and its chunks, written one by one (a client may stop early).
    stream: tuple[int, Iterable[bytes]] | None = None

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, json.dumps(payload).encode())


@dataclass
class FakeService:
    requests: list[Request] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def paths(self, method: str = "GET") -> list[str]:
        return [r.path for r in self.requests if r.method == method]

    def start(self) -> Self:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                split = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
                request = Request(
                    method=self.command,
                    path=split.path,
                    query={k: v[-1] for k, v in parse_qs(split.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                fake.requests.append(request)
                reply = fake.handle(request)
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                length, chunks = reply.stream or (len(reply.body), (reply.body,))
                self.send_header("content-length", str(length))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for chunk in chunks:
                        self.wfile.write(chunk)

            do_GET = do_POST = _serve  # http.server's handler names

        self.server = serve(Handler)
        return self

    def stop(self) -> None:
        if self.server is not None:
            shut(self.server)


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    """A loopback server on a free port, answering from a daemon thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def shut(server: http.server.ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


class AioService:
    """Serves the aiohttp routes a subclass adds in `routes`; `host` is loopback unless a subclass says otherwise."""

    host: str = "127.0.0.1"
    _loop: asyncio.AbstractEventLoop
    _runner: web.AppRunner
    _port: int

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        if not started.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        self.run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)

    def run(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Runs `work` on the server's loop (where its websockets live) and waits for it."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, 0)
        self._loop.run_until_complete(site.start())
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()
        self._loop.run_forever()


def wait_until(predicate: Callable[[], Any], timeout: float, record: Callable[[], object]) -> Any:
    """Polls `predicate` until it is truthy and returns that; on timeout fails with what the fake recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s; calls so far: {record()}")
