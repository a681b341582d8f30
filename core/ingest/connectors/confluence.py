"""Confluence: every current page of one space, through atlassian-python-api's REST v1 client (the content API
that both Confluence Cloud, at https://SITE.atlassian.net/wiki, and Data Center serve). Pages come as their
storage format (XHTML), which the HTML extractor reads."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

from atlassian.confluence import ConfluenceServer
from atlassian.errors import ApiError
from requests import HTTPError, RequestException

from core.config import Settings
from core.ingest.connectors import Body, ConnectorError, DocRef, refused

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
_HINT = "CONFLUENCE_USER and CONFLUENCE_API_TOKEN"
T = TypeVar("T")


class ConfluenceConnector:
    def __init__(self, space: str, settings: Settings):
        token = settings.confluence_api_token
        if not settings.confluence_url or token is None:
            raise ConnectorError(f"confluence:{space} needs CONFLUENCE_URL and CONFLUENCE_API_TOKEN in the settings")
        self.space = space
        self._site = settings.confluence_url.rstrip("/")
        secret = token.get_secret_value()
        # The REST v1 client whatever the host: the library's Cloud class speaks the v2 API, which lists pages by
        # numeric space id rather than by key.
        auth: dict[str, Any] = (
            {"username": settings.confluence_user, "password": secret}
            if settings.confluence_user
            else {"token": secret}
        )
        self._client = ConfluenceServer(self._site, timeout=int(settings.fetch_timeout), **auth)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise refused("Confluence", status, what, _HINT, str(exc).splitlines()[0] if str(exc) else "") from exc
        except ApiError as exc:  # the library's 404s: an unknown id, or one the user may not see
            raise ConnectorError(f"Confluence: {what}: {exc}") from exc
        except RequestException as exc:
            raise ConnectorError(f"Confluence at {self._site} cannot be reached ({exc.__class__.__name__})") from exc

    def documents(self) -> Iterator[DocRef]:
        start = 0
        while True:
            page = self._call(
                f"space {self.space}",
                partial(
                    self._client.get_all_pages_from_space_raw,
                    self.space,
                    start=start,
                    limit=PAGE_SIZE,
                    expand="version",
                ),
            )
            results = page.get("results", [])
            base = page.get("_links", {}).get("base") or self._site
            for item in results:
                yield DocRef(
                    id=str(item["id"]),
                    title=str(item.get("title", "")),
                    url=base + item.get("_links", {}).get("webui", f"/pages/viewpage.action?pageId={item['id']}"),
                    updated_at=str(item.get("version", {}).get("when") or item.get("version", {}).get("number", "")),
                )
            if "next" not in page.get("_links", {}) or not results:
                return
            start += len(results)

    def close(self) -> None:
        self._client.close()

    def fetch(self, doc: DocRef) -> Body:
        page = self._call(f"page {doc.id}", lambda: self._client.get_page_by_id(doc.id, expand="body.storage"))
        storage = page.get("body", {}).get("storage", {}).get("value", "")
        title = html.escape(str(page.get("title") or doc.title))
        wrapped = f"<html><head><title>{title}</title></head><body>{storage}</body></html>"
        return Body(data=wrapped.encode(), suffix=".html")
