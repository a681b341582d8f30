"""Finding and reading what to ingest: files, directories (recursively), http(s) URLs and sitemaps.

Problems with a source the user named are raised at once, before anything is written; problems with
a file found inside a directory or a page listed in a sitemap are collected and reported, so one bad
file does not block a whole folder.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from core.config import Settings
from core.errors import IngestError, UnsupportedSource
from core.ingest.egress import InternalAddress, ingest_client
from core.ingest.extract import CONTENT_TYPES, EXTRACTORS, check_type, suffix_of

logger = logging.getLogger(__name__)

MAX_SITEMAP_URLS = 10_000
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
_FETCH_CONCURRENCY = 4


@dataclass(frozen=True, kw_only=True)
class RawDoc:
    source: str
    origin: str
    suffix: str
    data: bytes
    explicit: bool  # named by the user, so a failure to read it is fatal
    title: str = ""  # what the source calls it (a connector's file name), when the document itself names nothing


@dataclass
class Found:
    docs: list[RawDoc] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)


def is_url(value: str) -> bool:
    """Anything that starts like a URL scheme ('https:/', 'ftp://', a mistyped 'htp:/') is treated as one."""
    return _SCHEME.match(value) is not None


def check_url(raw: str) -> None:
    """Refuse what cannot be fetched before anything is read or written. Whether the address is public is
    checked when fetching (core.ingest.egress), on every hop."""
    try:
        raw.encode()
    except UnicodeEncodeError:  # JSON can escape a lone surrogate; nothing downstream can store or fetch it
        raise IngestError(f"{raw!r}: not a valid URL (a lone UTF-16 surrogate is not valid Unicode)") from None
    invalid = f"{raw}: not a valid URL; expected http(s)://host/path"
    try:
        parsed = urlparse(raw)
        parsed.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:  # 'http://[::1/': an unclosed IPv6 bracket
        raise IngestError(f"{invalid} ({exc})") from exc
    if parsed.scheme not in ("http", "https"):
        raise UnsupportedSource(f"{raw}: only http(s) URLs can be ingested")
    if not parsed.hostname or " " in raw:
        raise IngestError(invalid)


def normalise_origin(value: str) -> str:
    return value if is_url(value) else str(Path(value).expanduser().resolve())


def _read_file(path: Path, origin: str, explicit: bool, max_bytes: int) -> RawDoc:
    suffix = check_type(str(path))
    size = path.stat().st_size
    if size > max_bytes:
        raise IngestError(f"{path}: {size / 1e6:.1f} MB is over INGEST_MAX_FILE_MB")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror})") from exc
    return RawDoc(source=str(path), origin=origin, suffix=suffix, data=data, explicit=explicit)


def _walk(root: Path, found: Found, max_bytes: int) -> None:
    origin = str(root)
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # .git, .venv, editor files
        if not path.is_file() or suffix_of(path.name) not in EXTRACTORS:
            continue
        try:
            found.docs.append(_read_file(path, origin, False, max_bytes))
        except IngestError as exc:
            found.failures.append((str(path), str(exc)))


class FetchStatus(IngestError):
    """The server answered with an error status (404 and 410: the page is gone)."""

    def __init__(self, url: str, status: int):
        super().__init__(f"{url}: HTTP {status}")
        self.status = status


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects: what is stored as the document's source
    data: bytes
    content_type: str
    not_modified: bool = False  # a conditional request answered 304: no body was sent
    etag: str | None = None  # the validators to send next time (core.ingest.validators)
    last_modified: str | None = None
    robots: tuple[str, ...] = ()  # X-Robots-Tag header values (core.ingest.pagemeta)


async def fetch(client: httpx.AsyncClient, url: str, max_bytes: int, headers: dict[str, str] | None = None) -> Fetched:
    """GET a URL through the egress guard; `headers` may make it conditional (If-None-Match, …)."""
    try:
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                await response.aread()  # nothing, but read: the connection goes back to the pool
                return Fetched(str(response.url), b"", "", not_modified=True)
            if response.status_code >= 400:
                raise FetchStatus(url, response.status_code)
            chunks: list[bytes] = []
            total = 0
            async for block in response.aiter_bytes():
                total += len(block)
                if total > max_bytes:
                    raise IngestError(f"{url}: larger than FETCH_MAX_MB")
                chunks.append(block)
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            return Fetched(
                str(response.url),
                b"".join(chunks),
                content_type,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                robots=tuple(response.headers.get_list("x-robots-tag")),
            )
    except InternalAddress as exc:  # the same words whether the port is open or not: no reachability oracle
        raise IngestError(f"{url}: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise IngestError(f"{url}: invalid URL ({exc})") from exc
    except httpx.HTTPError as exc:
        raise IngestError(f"{url}: cannot fetch ({exc.__class__.__name__}: {exc})") from exc


@dataclass(frozen=True)
class SitemapEntry:
    url: str
    lastmod: str | None  # as written (W3C datetime); compared by core.ingest.crawl


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _sitemap_locations(data: bytes) -> tuple[list[SitemapEntry], bool] | None:
    """(entries, is_index) when data is a sitemap or sitemap index, else None."""
    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, DefusedXmlException):
        return None
    tag = _local(root.tag)
    if tag not in ("urlset", "sitemapindex"):
        return None
    entries = []
    for item in root:
        fields = {_local(el.tag): (el.text or "").strip() for el in item}
        if fields.get("loc"):
            entries.append(SitemapEntry(fields["loc"], fields.get("lastmod") or None))
    return entries, tag == "sitemapindex"


async def sitemap_entries(
    client: httpx.AsyncClient,
    entries: list[SitemapEntry],
    is_index: bool,
    failures: list[tuple[str, str]],
    max_bytes: int,
) -> list[SitemapEntry]:
    """The pages of a sitemap (an index's nested sitemaps read too, three levels deep), first of each URL kept."""
    pages: list[SitemapEntry] = []
    pending = entries
    for _ in range(3):  # sitemap indexes nest; three levels is plenty
        if not is_index:
            pages.extend(pending)
            break
        nested: list[SitemapEntry] = []
        for child in pending:
            try:
                child_data = (await fetch(client, child.url, max_bytes)).data
            except IngestError as exc:
                failures.append((child.url, str(exc)))
                continue
            parsed = _sitemap_locations(child_data)
            if parsed is not None:
                (pages if not parsed[1] else nested).extend(parsed[0])
        pending, is_index = nested, True
    first: dict[str, SitemapEntry] = {}
    for entry in pages:
        first.setdefault(entry.url, entry)
    return list(first.values())[:MAX_SITEMAP_URLS]


def url_suffix(url: str, content_type: str) -> str:
    from_path = suffix_of(urlparse(url).path)
    if from_path in EXTRACTORS and content_type in ("", "application/octet-stream", "text/plain"):
        return from_path
    return CONTENT_TYPES.get(content_type, from_path if from_path in EXTRACTORS else ".html")


async def _url(client: httpx.AsyncClient, url: str, found: Found, max_bytes: int) -> None:
    got = await fetch(client, url, max_bytes)
    sitemap = sitemap_of(got)
    if sitemap is None:
        suffix = url_suffix(got.url, got.content_type)
        found.docs.append(RawDoc(source=got.url, origin=url, suffix=suffix, data=got.data, explicit=True))
        return
    pages = await sitemap_entries(client, *sitemap, found.failures, max_bytes)
    gate = asyncio.Semaphore(_FETCH_CONCURRENCY)

    async def page(link: str) -> RawDoc | None:
        async with gate:
            try:
                got = await fetch(client, link, max_bytes)
            except IngestError as exc:
                found.failures.append((link, str(exc)))
                return None
        suffix = url_suffix(got.url, got.content_type)
        return RawDoc(source=got.url, origin=url, suffix=suffix, data=got.data, explicit=False)

    found.docs.extend(doc for doc in await asyncio.gather(*(page(e.url) for e in pages)) if doc is not None)


def sitemap_of(got: Fetched) -> tuple[list[SitemapEntry], bool] | None:
    """The entries of a fetched sitemap (or index), None when it is a page."""
    is_xml = "xml" in got.content_type or got.url.endswith(".xml")
    return _sitemap_locations(got.data) if is_xml else None


async def discover(inputs: list[str], settings: Settings) -> Found:
    found = Found()
    max_file = int(settings.max_file_mb * 1e6)
    max_fetch = int(settings.fetch_max_mb * 1e6)
    async with ingest_client(settings) as client:
        for raw in inputs:
            if is_url(raw):
                check_url(raw)
                await _url(client, raw, found, max_fetch)
                continue
            path = Path(raw).expanduser().resolve()
            if path.is_dir():
                _walk(path, found, max_file)
            elif path.is_file():
                found.docs.append(_read_file(path, str(path), True, max_file))
            else:
                raise IngestError(f"{raw}: no such file or directory")
    return found
