"""A fake Confluence speaking its REST v1 content API as atlassian-python-api calls it: pages of a space with
their version (`GET /rest/api/content?spaceKey=&type=page&start=&limit=&expand=version`, at most `max_limit`
per response with a `_links.next`, as the real server caps `limit`), and one page with its storage-format body
(`GET /rest/api/content/{id}?expand=body.storage`). Basic auth is checked (401 otherwise); a space in
`forbidden` answers 403 as for a user without the space's view permission."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.rest import FakeService, Reply, Request

USER, TOKEN = "bot@example.com", "confluence-token"
WEB_BASE = "https://wiki.example.com/wiki"  # what `_links.base` says: the site users browse, not this server
_CT = "application/json;charset=UTF-8"


@dataclass
class Page:
    space: str
    title: str
    body: str
    version: int = 1
    when: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


@dataclass
class FakeConfluence(FakeService):
    pages: dict[str, Page] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    max_limit: int = 2

    def add(self, page_id: str, space: str, title: str, body: str) -> None:
        self.pages[page_id] = Page(space, title, body)

    def edit(self, page_id: str, body: str) -> None:
        page = self.pages[page_id]
        page.body, page.version, page.when = body, page.version + 1, datetime.now(UTC).isoformat()

    def body_fetches(self) -> list[str]:
        return [p.rsplit("/", 1)[-1] for p in self.paths() if p.startswith("/rest/api/content/")]

    def _summary(self, page_id: str, page: Page) -> dict[str, Any]:
        return {
            "id": page_id,
            "type": "page",
            "status": "current",
            "title": page.title,
            "version": {"number": page.version, "when": page.when},
            "_links": {
                "webui": f"/spaces/{page.space}/pages/{page_id}",
                "self": f"{self.base_url}/rest/api/content/{page_id}",
            },
        }

    def handle(self, request: Request) -> Reply:
        expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Reply(
                401, b'{"statusCode":401,"message":"Client must be authenticated to access this resource."}', _CT
            )
        if request.path == "/rest/api/content":
            space = request.query.get("spaceKey", "")
            if space in self.forbidden:
                return Reply(403, b'{"statusCode":403,"message":"User not permitted to view space"}', _CT)
            start, limit = int(request.query.get("start", 0)), min(int(request.query.get("limit", 25)), self.max_limit)
            matching = [(i, p) for i, p in self.pages.items() if p.space == space]
            chunk = matching[start : start + limit]
            links: dict[str, str] = {"base": WEB_BASE, "context": "/wiki"}
            if start + limit < len(matching):
                links["next"] = f"/rest/api/content?spaceKey={space}&type=page&start={start + limit}&limit={limit}"
            results = [self._summary(i, p) for i, p in chunk]
            return Reply.json(
                200, {"results": results, "start": start, "limit": limit, "size": len(results), "_links": links}
            )
        if request.path.startswith("/rest/api/content/"):
            page_id = request.path.rsplit("/", 1)[-1]
            page = self.pages.get(page_id)
            if page is None:
                return Reply(404, b'{"statusCode":404,"message":"No content found with id"}', _CT)
            if page.space in self.forbidden:
                return Reply(403, b'{"statusCode":403,"message":"User not permitted to view page"}', _CT)
            found = self._summary(page_id, page) | {
                "body": {"storage": {"value": page.body, "representation": "storage"}}
            }
            found["_links"]["base"] = WEB_BASE
            return Reply.json(200, found)
        return Reply(404, b'{"statusCode":404,"message":"null for uri"}', _CT)
