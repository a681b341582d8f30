"""URL ingestion refuses internal addresses (SSRF) on every hop, without revealing what is reachable, unless
INGEST_ALLOWED_HOSTS opts a host or network in. Real HTTP servers on loopback; the refusal happens before any
connection, so no test here reaches anything but 127.0.0.x."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from core.config import Settings
from core.errors import IngestError
from core.ingest.egress import REFUSED, AddressPolicy
from core.ingest.sources import discover

ALLOW_LOOPBACK = Settings(_env_file=None, ingest_allowed_hosts="127.0.0.1")
DEFAULT = Settings(_env_file=None)


class Site(http.server.BaseHTTPRequestHandler):
    """`/page.md` is a page, `/go?to=URL` redirects (302) to URL, `/sitemap.xml` lists `Site.locs`."""

    locs: tuple[str, ...] = ()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/go":
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/sitemap.xml":
            entries = "".join(f"<url><loc>{loc}</loc></url>" for loc in self.locs)
            self._send(
                "application/xml", f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
            )
            return
        self._send("text/markdown", "# Internal\n\nThe database password is hunter2.\n")

    def _send(self, content_type: str, text: str) -> None:
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Servers:
    allowed: str  # on 127.0.0.1, the address ALLOW_LOOPBACK opts in
    internal: str  # on 127.0.0.2: loopback too, never opted in
    closed: str  # 127.0.0.2, a port nobody listens on


def _serve(host: str, handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _closed_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    allowed, internal = _serve("127.0.0.1", Site), _serve("127.0.0.2", Site)
    yield Servers(
        allowed=f"http://127.0.0.1:{allowed.server_address[1]}",
        internal=f"http://127.0.0.2:{internal.server_address[1]}",
        closed=f"http://127.0.0.2:{_closed_port('127.0.0.2')}",
    )
    allowed.shutdown()
    internal.shutdown()


async def refusal(url: str, settings: Settings = DEFAULT) -> str:
    with pytest.raises(IngestError) as caught:
        await discover([url], settings)
    return str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://0.0.0.0/",
        "http://2130706433/",  # 127.0.0.1 in decimal
        "http://017700000001/",  # in octal
        "http://0x7f.1/",  # in hex, short form
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
        "http://localhost/",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://100.100.100.200/",  # shared address space (a metadata service too)
        "http://224.0.0.1/",  # multicast
    ],
)
async def test_internal_addresses_are_refused(url: str) -> None:
    assert await refusal(url) == f"{url}: {REFUSED}"


async def test_open_and_closed_ports_look_the_same(servers: Servers) -> None:
    """No port-scan oracle: the refusal comes before any connection attempt."""
    open_error = await refusal(f"{servers.internal}/page.md")
    closed_error = await refusal(f"{servers.closed}/page.md")
    assert (
        open_error.removeprefix(servers.internal) == closed_error.removeprefix(servers.closed) == f"/page.md: {REFUSED}"
    )


async def test_allowed_hosts_opt_internal_targets_in(servers: Servers) -> None:
    found = await discover([f"{servers.allowed}/page.md"], ALLOW_LOOPBACK)
    assert [d.source for d in found.docs] == [f"{servers.allowed}/page.md"]
    assert b"hunter2" in found.docs[0].data
    assert await refusal(f"{servers.allowed}/page.md") == f"{servers.allowed}/page.md: {REFUSED}"  # not by default
    assert await refusal(f"{servers.internal}/page.md", ALLOW_LOOPBACK) == f"{servers.internal}/page.md: {REFUSED}"
    by_name = Settings(_env_file=None, ingest_allowed_hosts="localhost")
    port = servers.allowed.rsplit(":", 1)[1]
    assert len((await discover([f"http://localhost:{port}/page.md"], by_name)).docs) == 1
    by_network = Settings(_env_file=None, ingest_allowed_hosts="127.0.0.0/8")
    assert len((await discover([f"{servers.internal}/page.md"], by_network)).docs) == 1


async def test_every_redirect_hop_is_checked_and_the_final_url_is_the_source(servers: Servers) -> None:
    to_internal = f"{servers.allowed}/go?to={servers.internal}/page.md"
    assert await refusal(to_internal, ALLOW_LOOPBACK) == f"{to_internal}: {REFUSED}"
    to_closed = f"{servers.allowed}/go?to={servers.closed}/page.md"
    assert await refusal(to_closed, ALLOW_LOOPBACK) == f"{to_closed}: {REFUSED}"
    to_metadata = f"{servers.allowed}/go?to=http://169.254.169.254/latest/meta-data/"
    assert await refusal(to_metadata, ALLOW_LOOPBACK) == f"{to_metadata}: {REFUSED}"

    found = await discover([f"{servers.allowed}/go?to=/page.md"], ALLOW_LOOPBACK)
    assert [(d.source, d.origin) for d in found.docs] == [
        (f"{servers.allowed}/page.md", f"{servers.allowed}/go?to=/page.md")
    ]


async def test_sitemap_entries_are_checked(servers: Servers) -> None:
    refused = [f"{servers.internal}/page.md", f"{servers.closed}/page.md", "http://169.254.169.254/latest/"]
    Site.locs = (f"{servers.allowed}/page.md", *refused)
    try:
        found = await discover([f"{servers.allowed}/sitemap.xml"], ALLOW_LOOPBACK)
    finally:
        Site.locs = ()
    assert [d.source for d in found.docs] == [f"{servers.allowed}/page.md"]
    assert sorted(found.failures) == sorted((url, f"{url}: {REFUSED}") for url in refused)


def test_allowed_hosts_setting() -> None:
    entries = Settings(_env_file=None, ingest_allowed_hosts="127.0.0.1, Wiki.Corp.,10.0.0.0/8,[fd00::1]")
    policy = AddressPolicy.from_entries(entries.ingest_allowed_hosts)
    assert policy.hosts == {"wiki.corp"}  # names compare case-insensitively, without a trailing dot
    assert [str(n) for n in policy.networks] == ["127.0.0.1/32", "10.0.0.0/8", "fd00::1/128"]
