"""A fake Notion speaking API version 2025-09-03 as notion-client calls it (under /v1): a database and its data
source (`GET /databases/{id}`, `POST /data_sources/{id}/query` paginated by `start_cursor`, at most `max_page`
results per response), pages (`GET /pages/{id}`), a page's sub-pages (`GET /blocks/{id}/children`, paginated the
same way) and a page as Markdown (`GET /pages/{id}/markdown`). The bearer token is checked (401 `unauthorized`);
an id in `restricted` answers 403 `restricted_resource`. Errors carry Notion's error object."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.rest import FakeService, Reply, Request

TOKEN = "ntn_test_token"
DATABASE, DATA_SOURCE = "db000000000000000000000000000001", "ds000000000000000000000000000001"


def _error(status: int, code: str, message: str) -> Reply:
    return Reply.json(status, {"object": "error", "status": status, "code": code, "message": message})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class NotionPage:
    title: str
    markdown: str
    parent: str  # DATABASE, or another page's id
    edited: str = field(default_factory=_now)


@dataclass
class FakeNotion(FakeService):
    pages: dict[str, NotionPage] = field(default_factory=dict)
    restricted: set[str] = field(default_factory=set)
    max_page: int = 2

    def edit(self, page_id: str, markdown: str, title: str | None = None) -> None:
        page = self.pages[page_id]
        page.markdown, page.edited, page.title = markdown, _now(), title or page.title

    def markdown_fetches(self) -> list[str]:
        return [p.split("/")[3] for p in self.paths() if p.endswith("/markdown")]

    def _page(self, page_id: str) -> dict[str, Any]:
        page = self.pages[page_id]
        slug = "-".join(page.title.split())
        parent = (
            {"type": "data_source_id", "data_source_id": DATA_SOURCE}
            if page.parent == DATABASE
            else {"type": "page_id", "page_id": page.parent}
        )
        return {
            "object": "page",
            "id": page_id,
            "created_time": page.edited,
            "last_edited_time": page.edited,
            "in_trash": False,
            "archived": False,
            "parent": parent,
            "url": f"https://www.notion.so/{slug}-{page_id.replace('-', '')}",
            "properties": {"Name": {"id": "title", "type": "title", "title": [{"plain_text": page.title}]}},
        }

    def _list(self, items: list[dict[str, Any]], cursor: str | None, size: int) -> Reply:
        start = int(cursor) if cursor else 0
        size = min(size, self.max_page)
        more = start + size < len(items)
        return Reply.json(
            200,
            {
                "object": "list",
                "results": items[start : start + size],
                "next_cursor": str(start + size) if more else None,
                "has_more": more,
                "type": "page_or_data_source",
            },
        )

    def handle(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _error(401, "unauthorized", "API token is invalid.")
        parts = request.path.removeprefix("/v1/").split("/")
        if any(p in self.restricted for p in parts):
            return _error(403, "restricted_resource", "Insufficient permissions for this endpoint.")
        match parts:
            case ["databases", db] if db == DATABASE:
                return Reply.json(
                    200, {"object": "database", "id": DATABASE, "data_sources": [{"id": DATA_SOURCE, "name": "Docs"}]}
                )
            case ["databases", page_id] if page_id in self.pages:
                return _error(400, "validation_error", f"Provided ID {page_id} is a page, not a database.")
            case ["data_sources", ds, "query"] if ds == DATA_SOURCE and request.method == "POST":
                body = request.json()
                rows = [self._page(i) for i, p in self.pages.items() if p.parent == DATABASE]
                return self._list(rows, body.get("start_cursor"), int(body.get("page_size", 100)))
            case ["pages", page_id] if page_id in self.pages:
                return Reply.json(200, self._page(page_id))
            case ["pages", page_id, "markdown"] if page_id in self.pages:
                markdown = self.pages[page_id].markdown
                return Reply.json(
                    200,
                    {
                        "object": "page_markdown",
                        "id": page_id,
                        "markdown": markdown,
                        "truncated": False,
                        "unknown_block_ids": [],
                    },
                )
            case ["blocks", page_id, "children"] if page_id in self.pages:
                children = [
                    {
                        "object": "block",
                        "id": i,
                        "type": "child_page",
                        "has_children": True,
                        "last_edited_time": p.edited,
                        "child_page": {"title": p.title},
                    }
                    for i, p in self.pages.items()
                    if p.parent == page_id
                ]
                return self._list(children, request.query.get("start_cursor"), int(request.query.get("page_size", 100)))
        return _error(404, "object_not_found", f"Could not find object with ID: {parts[-1]}.")
