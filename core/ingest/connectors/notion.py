"""Notion: a database's pages, or a page with its sub-pages, through notion-client (API version 2025-09-03:
a database holds data sources, which hold the pages). Each page is read as Notion's own Markdown
(GET /v1/pages/{id}/markdown), so no block-by-block conversion lives here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
from notion_client import APIResponseError, Client
from notion_client.errors import NotionClientErrorBase
from notion_client.helpers import iterate_paginated_api

from core.config import Settings
from core.ingest.connectors import Body, ConnectorError, DocRef, refused

logger = logging.getLogger(__name__)

PAGE_SIZE = 100


def _title(page: dict[str, Any]) -> str:
    for prop in page.get("properties", {}).values():
        if prop.get("type") == "title":
            return "".join(part.get("plain_text", "") for part in prop.get("title", []))
    return ""


def _ref(page: dict[str, Any]) -> DocRef:
    return DocRef(id=page["id"], title=_title(page), url=page["url"], updated_at=page["last_edited_time"])


class NotionConnector:
    def __init__(self, ident: str, settings: Settings):
        if settings.notion_token is None:
            raise ConnectorError(f"notion:{ident} needs NOTION_TOKEN in the settings")
        self.ident = ident
        self._client = Client(
            auth=settings.notion_token.get_secret_value(),
            base_url=settings.notion_base_url.rstrip("/"),
            timeout_ms=int(settings.fetch_timeout * 1000),
            log_level=logging.ERROR,  # its own logger prints every failed request to stdout
        )

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        """The sync client's answers are typed sync-or-async; here they are always the JSON object."""
        try:
            return call()
        except APIResponseError as exc:
            raise refused(
                "Notion", exc.status, what, "NOTION_TOKEN", f"{getattr(exc.code, 'value', exc.code)}: {exc}"
            ) from exc
        except (NotionClientErrorBase, httpx.HTTPError) as exc:
            raise ConnectorError(f"Notion: {what}: {exc.__class__.__name__}: {exc}") from exc

    def documents(self) -> Iterator[DocRef]:
        try:
            database: Any = self._client.databases.retrieve(self.ident)
        except APIResponseError as exc:
            # A page's id: Notion answers 404 (or 400 for a page it can see) on the databases endpoint.
            if exc.status not in (400, 404):
                raise refused("Notion", exc.status, f"{self.ident}", "NOTION_TOKEN", str(exc)) from exc
            yield from self._page_tree(self.ident)
            return
        except (NotionClientErrorBase, httpx.HTTPError) as exc:  # a timeout, a 502 page: the sync fails, recorded
            raise ConnectorError(f"Notion: {self.ident}: {exc.__class__.__name__}: {exc}") from exc
        for source in database.get("data_sources", []):
            pages = iterate_paginated_api(
                self._client.data_sources.query, data_source_id=source["id"], page_size=PAGE_SIZE
            )
            for page in self._call(f"data source {source['id']}", partial(list, pages)):
                if page.get("object") == "page" and not page.get("in_trash") and not page.get("archived"):
                    yield _ref(page)

    def _page_tree(self, page_id: str) -> Iterator[DocRef]:
        """The page and, depth first, every sub-page below it (pages inside other blocks are not followed)."""
        page = self._call(f"page {page_id}", lambda: self._client.pages.retrieve(page_id))
        if page.get("in_trash") or page.get("archived"):
            return
        yield _ref(page)
        blocks = iterate_paginated_api(self._client.blocks.children.list, block_id=page_id, page_size=PAGE_SIZE)
        for block in self._call(f"the sub-pages of {page_id}", partial(list, blocks)):
            if block.get("type") == "child_page":
                yield from self._page_tree(block["id"])

    def close(self) -> None:
        self._client.close()

    def fetch(self, doc: DocRef) -> Body:
        got = self._call(f"page {doc.id}", lambda: self._client.pages.retrieve_markdown(doc.id))
        if got.get("truncated"):
            logger.warning("Notion page %s is longer than one markdown response; its first part is ingested", doc.url)
        # The title as front matter, where the Markdown extractor takes it from (Notion's Markdown has no H1).
        title = " ".join(doc.title.split())
        return Body(data=f"---\ntitle: {title}\n---\n\n{got['markdown']}".encode(), suffix=".md")
