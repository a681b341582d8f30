"""A website on a loopback port for crawl tests and benchmarks: pages held in memory, served with ETag and
Last-Modified and answering conditional requests with 304, robots.txt, redirects; every request logged, so a
test can tell a full download from a 304 from no request at all."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate

HTML = "text/html; charset=utf-8"


@dataclass
class Page:
    body: bytes
    content_type: str = HTML
    modified: float = 1_700_000_000.0  # Last-Modified, seconds since the epoch
    headers: dict[str, str] = field(default_factory=dict)  # more response headers (X-Robots-Tag, ...)


@dataclass
class Site:
    pages: dict[str, Page] = field(default_factory=dict)  # by path (with the query, if any)
    redirects: dict[str, str] = field(default_factory=dict)  # path → Location
    log: list[tuple[str, int]] = field(default_factory=list)  # (path, status) of every request
    failing: set[str] = field(default_factory=set)  # paths answering 503 for now
    base: str = ""

    def put(
        self,
        path: str,
        body: str | bytes,
        content_type: str = HTML,
        modified: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        old = self.pages.get(path)
        when = modified if modified is not None else (old.modified + 60 if old else Page(b"").modified)
        self.pages[path] = Page(data, content_type, when, headers or {})

    def bodies(self) -> list[str]:
        """Paths downloaded in full (200), robots.txt aside."""
        return [p for p, status in self.log if status == 200 and p != "/robots.txt"]

    def count(self, status: int) -> int:
        return sum(1 for _, s in self.log if s == status)


def _etag(page: Page) -> str:
    return '"' + hashlib.sha256(page.body).hexdigest()[:16] + '"'


class _Handler(http.server.BaseHTTPRequestHandler):
    site: Site
    protocol_version = "HTTP/1.1"  # keep-alive, as real sites: every answer has a Content-Length

    def do_GET(self) -> None:
        path = self.path
        if path in self.site.failing:
            self._answer(path, 503, b"busy")
            return
        if path in self.site.redirects:
            self._answer(path, 302, headers={"Location": self.site.redirects[path]})
            return
        page = self.site.pages.get(path)
        if page is None:
            self._answer(path, 404, b"not found")
            return
        etag, modified = _etag(page), formatdate(page.modified, usegmt=True)
        headers = {"ETag": etag, "Last-Modified": modified, "Content-Type": page.content_type, **page.headers}
        if self.headers.get("If-None-Match") == etag or (
            "If-None-Match" not in self.headers and self.headers.get("If-Modified-Since") == modified
        ):
            self._answer(path, 304, headers={"ETag": etag})
            return
        self._answer(path, 200, page.body, headers)

    def _answer(self, path: str, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.site.log.append((path, status))
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve_site(site: Site) -> Iterator[Site]:
    handler = type("Handler", (_Handler,), {"site": site})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


def page(title: str, text: str, links: Sequence[str] = (), head: str = "") -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<html><head><title>{title}</title>{head}</head><body><nav><ul>{anchors}</ul></nav>"
        f"<main><h1>{title}</h1><p>{text}</p></main></body></html>"
    )
