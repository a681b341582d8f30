"""What a web source's last sync saw of each page, so the next one can skip unchanged pages before downloading
them: the HTTP validators (ETag, Last-Modified) sent back as a conditional request, the sitemap's <lastmod>,
the document the page became and the links it held (a crawl follows the links of a page answered 304 without
its body). Kept in the sources registry's database, keyed by (source id, page key), and written only after the
page's document was stored, so a sync killed in between fetches the page again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.sqlite import connect, init_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS page_validators (
    source_id TEXT NOT NULL, key TEXT NOT NULL, source TEXT NOT NULL, etag TEXT, last_modified TEXT,
    lastmod TEXT, links TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (source_id, key)
);
"""


@dataclass(frozen=True, kw_only=True)
class Seen:
    key: str  # the normalised URL the page was asked for (core.ingest.crawl.url_key)
    source: str  # the document it became: its canonical URL
    etag: str | None = None
    last_modified: str | None = None
    lastmod: str | None = None  # from the sitemap
    links: tuple[str, ...] = field(default=(), repr=False)

    def conditional_headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class Validators:
    """One source's rows. Lookups load a page's links only when it is unchanged (links can be many)."""

    def __init__(self, path: Path, source_id: str):
        self._path = path
        self._source_id = source_id
        init_db(path, SCHEMA)

    async def load(self) -> dict[str, Seen]:
        """key → what was seen, without the links (see `links`)."""
        return await asyncio.to_thread(self._load)

    def _load(self) -> dict[str, Seen]:
        with connect(self._path) as db:
            rows = db.execute(
                "SELECT key, source, etag, last_modified, lastmod FROM page_validators WHERE source_id = ?",
                (self._source_id,),
            ).fetchall()
        return {r[0]: Seen(key=r[0], source=r[1], etag=r[2], last_modified=r[3], lastmod=r[4]) for r in rows}

    async def links(self, key: str) -> tuple[str, ...]:
        return await asyncio.to_thread(self._links, key)

    def _links(self, key: str) -> tuple[str, ...]:
        with connect(self._path) as db:
            row = db.execute(
                "SELECT links FROM page_validators WHERE source_id = ? AND key = ?", (self._source_id, key)
            ).fetchone()
        return () if row is None else tuple(json.loads(row[0]))

    async def save(self, seen: Sequence[Seen]) -> None:
        if seen:
            await asyncio.to_thread(self._save, seen)

    def _save(self, seen: Sequence[Seen]) -> None:
        rows = [
            (self._source_id, s.key, s.source, s.etag, s.last_modified, s.lastmod, json.dumps(list(s.links)))
            for s in seen
        ]
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO page_validators VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")

    async def forget(self, keys: Sequence[str]) -> None:
        """Pages that failed or are gone: fetched in full next time."""
        if keys:
            await asyncio.to_thread(self._forget, keys)

    def _forget(self, keys: Sequence[str]) -> None:
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "DELETE FROM page_validators WHERE source_id = ? AND key = ?", [(self._source_id, k) for k in keys]
            )
            db.execute("COMMIT")
