"""Reading a website page by page, in bounded batches: a crawl (same host, optional path prefix, breadth-first
to a depth and a page cap, robots.txt honoured, politely paced) or a sitemap's pages.

Each page goes through the egress guard (core.ingest.egress) like every fetched URL. Pages seen by the last sync
(core.ingest.validators) are asked for conditionally (If-None-Match / If-Modified-Since): a 304 keeps the stored
document without downloading it, and a crawl follows the links the page had. A sitemap entry whose <lastmod> is
not newer than the one recorded is not requested at all. Variants of one page (trailing slash, fragment, tracking
or reordered query parameters, a <link rel=canonical> on the same host) are read once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from protego import Protego
from w3lib.url import canonicalize_url, url_query_cleaner

from core.config import Settings
from core.errors import IngestError
from core.ingest.extract import CONTENT_TYPES, EXTRACTORS, suffix_of
from core.ingest.pagemeta import PageMeta, agent_token, header_robots, html_meta
from core.ingest.sources import Fetched, FetchStatus, RawDoc, fetch, sitemap_entries, sitemap_of, url_suffix
from core.ingest.validators import Seen

logger = logging.getLogger(__name__)

BATCH_PAGES = 32  # pages held in memory at once: fetched, then handed to the pipeline
_CONCURRENCY = 4
_ROBOTS_MAX_BYTES = 500 * 1024  # what RFC 9309 asks a crawler to read at least
_TRACKING = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid", "fbclid", "highlight")
_PAGE_SUFFIXES = ("", ".php", ".asp", ".aspx", ".jsp", ".shtml", *EXTRACTORS)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, kw_only=True)
class CrawlOptions:
    """A crawl source's options (stored as the source's `options`): depth 0 is the start page alone."""

    depth: int = 2
    max_pages: int = 1000
    prefix: str | None = None  # only pages whose path starts with it (the start page is always read)

    MAX_DEPTH: ClassVar[int] = 20
    MAX_PAGES: ClassVar[int] = 100_000

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> CrawlOptions:
        depth, pages, prefix = options.get("depth", cls.depth), options.get("max_pages", cls.max_pages), None
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= cls.MAX_DEPTH:
            raise IngestError(f"--depth {depth!r}: expected a whole number from 0 to {cls.MAX_DEPTH}")
        if isinstance(pages, bool) or not isinstance(pages, int) or not 1 <= pages <= cls.MAX_PAGES:
            raise IngestError(f"--max-pages {pages!r}: expected a whole number from 1 to {cls.MAX_PAGES}")
        if options.get("prefix") is not None:
            prefix = str(options["prefix"])
            if not prefix.startswith("/") or any(c in prefix for c in "?# "):
                raise IngestError(f"--prefix {prefix!r}: expected a URL path starting with /, like /docs/")
        return cls(depth=depth, max_pages=pages, prefix=prefix)

    def as_options(self) -> dict[str, Any]:
        return {"depth": self.depth, "max_pages": self.max_pages, "prefix": self.prefix}


@functools.lru_cache(maxsize=65_536)  # every page links home and to its neighbours: the same URLs again and again
def url_key(url: str) -> str:
    """One key for the variants of a page: no fragment, no tracking parameters, sorted query, lower-case host,
    no default port, no trailing slash."""
    cleaned = url_query_cleaner(url, _TRACKING, remove=True, keep_fragments=False)
    parts = urlsplit(canonicalize_url(cleaned))
    host = parts.hostname or ""
    netloc = host if parts.port in (None, _DEFAULT_PORTS.get(parts.scheme)) else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") or "/", parts.query, ""))


def _newer(lastmod: str, recorded: str) -> bool:
    """Whether a sitemap <lastmod> is later than the one recorded; unreadable dates count as changed."""
    try:
        new, old = datetime.fromisoformat(lastmod), datetime.fromisoformat(recorded)
    except ValueError:
        return True
    return new.replace(tzinfo=new.tzinfo or UTC) > old.replace(tzinfo=old.tzinfo or UTC)


@dataclass
class Batch:
    """Pages read since the last batch: documents to ingest, pages unchanged (their stored document stays),
    pages that failed, and the validators to record once the documents are stored."""

    docs: list[RawDoc] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # sources of unchanged documents
    skipped: int = 0  # pages not downloaded: 304, or an unchanged <lastmod>
    failures: list[tuple[str, str]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)  # keys of pages that failed: fetched in full next time
    noindex: list[str] = field(default_factory=list)  # sources of pages saying noindex: removed if stored
    # Part of the source could not be listed (a sitemap of an index failed): what it lists is unknown, so
    # nothing may be pruned this time.
    incomplete: bool = False


@dataclass(frozen=True)
class _Visit:
    key: str
    doc: RawDoc | None = None
    kept: str | None = None
    links: tuple[str, ...] = ()
    seen: Seen | None = None
    failure: tuple[str, str] | None = None
    noindex: tuple[str, ...] = ()


class _Pacer:
    """Request starts at least `interval` seconds apart."""

    def __init__(self, interval: float):
        self._interval = interval
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if self._interval <= 0:
            return
        async with self._lock:
            delay = self._next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next = time.monotonic() + self._interval


class WebReader:
    """Fetches a source's pages with what the last sync saw of them (`known`, by url_key); `links(key)` gives an
    unchanged page's recorded links (core.ingest.validators.Validators.links)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        *,
        origin: str,
        known: dict[str, Seen],
        links: Callable[[str], Awaitable[tuple[str, ...]]] | None = None,
    ):
        self._client = client
        self._settings = settings
        self._origin = origin
        self._known = known
        self._links = links
        self._max_bytes = int(settings.fetch_max_mb * 1e6)
        self._gate = asyncio.Semaphore(_CONCURRENCY)
        self._pacer = _Pacer(settings.crawl_delay_seconds)
        self._agent = agent_token(settings.fetch_user_agent)

    def pace(self, interval: float) -> None:
        self._pacer = _Pacer(interval)

    async def _visit(self, url: str, *, explicit: bool, follow: bool, lastmod: str | None = None) -> _Visit:
        key = url_key(url)
        known = self._known.get(key)
        if known is not None and lastmod and known.lastmod and not _newer(lastmod, known.lastmod):
            return _Visit(key, kept=known.source)
        async with self._gate:
            await self._pacer.wait()
            try:
                got = await fetch(self._client, url, self._max_bytes, known.conditional_headers() if known else None)
            except IngestError as exc:
                if explicit:
                    raise
                gone = isinstance(exc, FetchStatus) and exc.status in (404, 410)
                # Any other failure (a timeout, a server error) keeps the stored document until the page answers,
                # and the crawl follows the links recorded for it: a hub page's hiccup must not prune its section.
                kept = known.source if known and not gone else None
                links = await self._links(key) if kept and follow and self._links else ()
                return _Visit(key, kept=kept, links=links, failure=(url, str(exc)))
        return await self._page(key, url, got, known, explicit=explicit, follow=follow, lastmod=lastmod)

    async def _page(
        self, key: str, url: str, got: Fetched, known: Seen | None, *, explicit: bool, follow: bool, lastmod: str | None
    ) -> _Visit:
        """What a fetched page (or a 304) becomes."""
        if got.not_modified and known is not None:
            links = await self._links(key) if follow and self._links else ()
            return _Visit(key, kept=known.source, links=links, seen=replace(known, lastmod=lastmod, links=links))
        if got.not_modified:
            return _Visit(key, failure=(url, "HTTP 304 to an unconditional request"))
        if follow and urlsplit(got.url).hostname != urlsplit(url).hostname:
            return _Visit(key)  # redirected off the site: not the crawl's
        path_suffix = suffix_of(urlsplit(got.url).path)
        if got.content_type not in CONTENT_TYPES and path_suffix not in EXTRACTORS:
            return _Visit(key)  # an image, a stylesheet, an archive: not a document
        suffix = url_suffix(got.url, got.content_type)
        source, meta = got.url.split("#")[0], PageMeta()
        if suffix == ".html":
            meta = await asyncio.to_thread(html_meta, got.data, got.url, self._agent, links=follow)
            if meta.canonical and urlsplit(meta.canonical).hostname == urlsplit(got.url).hostname:
                source = meta.canonical
        # A page the user named alone is read as a browser would; crawled and sitemap pages obey robots directives.
        robots = meta.robots | header_robots(got.robots, self._agent)
        links = () if robots.nofollow else meta.links
        if robots.noindex and not (explicit and not follow):
            # Its own document goes, whatever it was stored as; not the one a rel=canonical points to.
            own = {key, url_key(got.url)}
            stored = {u for u in (url, got.url, known and known.source) if u and url_key(u) in own}
            return _Visit(key, links=links, noindex=tuple(sorted(stored)))
        doc = RawDoc(source=source, origin=self._origin, suffix=suffix, data=got.data, explicit=explicit)
        seen = Seen(
            key=key, source=source, etag=got.etag, last_modified=got.last_modified, lastmod=lastmod, links=links
        )
        return _Visit(key, doc=doc, links=links, seen=seen)

    async def crawl(self, start: str, options: CrawlOptions, batch: int = BATCH_PAGES) -> AsyncIterator[Batch]:
        """Breadth-first from `start`, a batch at a time."""
        site = urlsplit(start).hostname
        robots = await self._robots(start)
        agent = self._settings.fetch_user_agent
        asked = robots.crawl_delay(agent)
        if asked and asked > self._settings.crawl_delay_seconds:
            self.pace(min(float(asked), 60.0))

        def follows(link: str) -> bool:
            parts = urlsplit(link)
            return (
                parts.hostname == site
                and (options.prefix is None or parts.path.startswith(options.prefix))
                and suffix_of(parts.path) in _PAGE_SUFFIXES
                and robots.can_fetch(link, agent)
            )

        if not robots.can_fetch(start, agent):
            raise IngestError(f"{start}: robots.txt disallows it for {agent!r}")
        queued, sources = {url_key(start)}, set[str]()
        level, pages = [start], 0
        for depth in range(options.depth + 1):
            following: list[str] = []
            for i in range(0, len(level), batch):
                group = level[i : i + batch][: options.max_pages - pages]
                visits = await asyncio.gather(*(self._visit(url, explicit=depth == 0, follow=True) for url in group))
                pages += len(group)
                out = Batch()
                for visit in visits:
                    _collect(out, visit, sources)
                    queued.update(url_key(s) for s in (visit.kept, visit.doc and visit.doc.source) if s)
                    for link in visit.links if depth < options.depth else ():
                        if pages + len(level) - i - len(group) + len(following) >= options.max_pages:
                            break  # enough pages queued for the cap: a page of 10,000 links must not grow the queue
                        if follows(link) and (key := url_key(link)) not in queued:
                            queued.add(key)
                            following.append(link)
                yield out
                if pages >= options.max_pages:
                    return
            level = following

    async def url(self, url: str, batch: int = BATCH_PAGES) -> AsyncIterator[Batch]:
        """A URL as `switchboard ingest` takes it: a sitemap's pages, or else the page (or file) itself, read as
        the user named it (robots directives are for what a crawl finds)."""
        key = url_key(url)
        if key in self._known:  # a page last time: asked for conditionally
            visit = await self._visit(url, explicit=True, follow=False)
        else:
            got = await fetch(self._client, url, self._max_bytes)
            if sitemap_of(got) is not None:
                async for part in self.sitemap(url, batch, got):
                    yield part
                return
            visit = await self._page(key, url, got, None, explicit=True, follow=False, lastmod=None)
        out = Batch()
        _collect(out, visit, set())
        yield out

    async def sitemap(self, url: str, batch: int = BATCH_PAGES, got: Fetched | None = None) -> AsyncIterator[Batch]:
        """The pages a sitemap (or sitemap index) lists, a batch at a time (`got`: the sitemap, if fetched)."""
        got = got or await fetch(self._client, url, self._max_bytes)
        parsed = sitemap_of(got)
        if parsed is None:
            raise IngestError(f"{url}: not a sitemap (expected <urlset> or <sitemapindex> XML)")
        failures: list[tuple[str, str]] = []
        entries = await sitemap_entries(self._client, *parsed, failures, self._max_bytes)
        sources: set[str] = set()
        for i in range(0, len(entries), batch):
            group = entries[i : i + batch]
            visits = await asyncio.gather(
                *(self._visit(e.url, explicit=False, follow=False, lastmod=e.lastmod) for e in group)
            )
            out = Batch(failures=failures if i == 0 else [], incomplete=bool(failures))
            for visit in visits:
                _collect(out, visit, sources)
            yield out
        if not entries:
            yield Batch(failures=failures, incomplete=bool(failures))

    async def _robots(self, start: str) -> Protego:
        """The site's robots.txt (RFC 9309): missing (4xx) allows everything; a server error (5xx) or one that
        cannot be fetched (unreachable, timed out) nothing."""
        url = urljoin(start, "/robots.txt")
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code >= 500:
                    return Protego.parse("User-agent: *\nDisallow: /")
                if response.status_code >= 400:
                    return Protego.parse("")
                body = bytearray()
                async for block in response.aiter_bytes():
                    body += block
                    if len(body) >= _ROBOTS_MAX_BYTES:
                        break
        except (httpx.HTTPError, IngestError) as exc:
            logger.info("robots.txt of %s unreachable (%s): crawling nothing", start, exc)
            return Protego.parse("User-agent: *\nDisallow: /")
        return Protego.parse(bytes(body[:_ROBOTS_MAX_BYTES]).decode("utf-8", "replace"))


def _collect(out: Batch, visit: _Visit, sources: set[str]) -> None:
    """A visit into the batch. A second page with a source already read (its canonical URL) is not ingested or
    counted twice, but its validators are kept: next time it is not downloaded either."""
    if visit.failure is not None:
        out.failures.append(visit.failure)
        out.forget.append(visit.key)
    if visit.kept is not None:
        out.kept.append(visit.kept)  # unchanged, or failed this time: its stored document stays (not pruned)
        out.skipped += visit.failure is None and visit.kept not in sources
        sources.add(visit.kept)
    if visit.doc is not None and visit.doc.source not in sources:
        sources.add(visit.doc.source)
        out.docs.append(visit.doc)
    if visit.seen is not None:
        out.seen.append(visit.seen)
    if visit.noindex:  # not recorded: read in full next time, in case it no longer says noindex
        out.noindex.extend(visit.noindex)
        out.forget.append(visit.key)
