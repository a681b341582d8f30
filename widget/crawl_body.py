"""The crawl fields of an admin request body, shared by POST /admin/kbs/{kb}/urls (crawl now) and
POST /admin/kbs/{kb}/sources (register a crawl): the same names, limits and errors as the CLI's --crawl,
--depth, --max-pages and --prefix (core.ingest.crawl.CrawlOptions)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from core.errors import IngestError
from core.ingest.crawl import CrawlOptions


class CrawlIn(BaseModel):
    crawl: bool = Field(False, description="The URL is a site's start page: crawl it (same host)")
    depth: int | None = Field(None, description="Crawl: how many links deep from the start page (default 2)")
    max_pages: int | None = Field(None, description="Crawl: at most this many pages (default 1000)")
    prefix: str | None = Field(None, max_length=500, description="Crawl: only paths starting with it, like /docs/")

    def crawl_options(self) -> dict[str, Any]:
        """The options given, checked; IngestError (a 400) for a bad one or for one given without crawl."""
        options = {k: v for k, v in self.model_dump(include={"depth", "max_pages", "prefix"}).items() if v is not None}
        if options and not self.crawl:
            raise IngestError(f"{', '.join(options)}: only for a crawl (crawl: true)")
        if self.crawl:
            CrawlOptions.parse(options)
        return options
