"""Connectors: sources that live in a SaaS (Confluence, Notion, Google Drive) rather than in files or on the web.

Each one is a small class over the service's own client library, behind one protocol: `documents()` lists what
the source holds (paginated by the connector, metadata only), `fetch()` reads one document's body in a format the
existing extractors take (Markdown, HTML, PDF, DOCX), `close()` releases its connections. Syncing them (skipping
unchanged documents, pruning deleted ones) is core.ingest.connectors.sync. The clients are blocking: callers run
them in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from core.config import Settings
from core.errors import IngestError

ConnectorKind = Literal["confluence", "notion", "drive"]
CONNECTOR_KINDS: tuple[ConnectorKind, ...] = ("confluence", "notion", "drive")
_TARGET = re.compile(r"^(confluence|notion|drive):([A-Za-z0-9_~.-]{1,200})$")


class ConnectorError(IngestError):
    """The service refused the whole source (a bad token, a missing permission, an unknown space): one line for
    the sync history, naming the setting to fix."""


@dataclass(frozen=True, kw_only=True)
class DocRef:
    id: str  # the service's id, stable across renames
    title: str
    url: str  # the page's web address, what a user can open: stored as the document's source and cited
    updated_at: str  # the service's own last-modified stamp, compared for equality only
    size: int | None = None  # bytes, where the listing says (Drive's files): one too large is not downloaded


@dataclass(frozen=True, kw_only=True)
class Body:
    data: bytes
    suffix: str  # which extractor reads it: .md, .html, .pdf, .docx


class Connector(Protocol):
    def documents(self) -> Iterator[DocRef]: ...

    def fetch(self, doc: DocRef) -> Body: ...

    def close(self) -> None: ...


def parse_target(target: str) -> tuple[ConnectorKind, str] | None:
    """'confluence:ENG' → ('confluence', 'ENG'); None when target names no connector. Notion ids are accepted with
    or without dashes (as a page URL ends)."""
    match = _TARGET.match(target.strip())
    if match is None:
        if target.split(":", 1)[0] in CONNECTOR_KINDS:
            raise IngestError(f"{target!r}: expected KIND:ID with an id of letters, digits, '-', '_' or '.'")
        return None
    return match[1], match[2]  # type: ignore[return-value]


def open_connector(kind: ConnectorKind, ident: str, settings: Settings) -> Connector:
    """The connector for a source; each service's library is imported only when one of its sources syncs."""
    try:
        return _open(kind, ident, settings)
    except ImportError as exc:
        raise ConnectorError(
            f"{kind}:{ident} needs the connectors extra: pip install 'switchboard[connectors]' ({exc.name} is missing)"
        ) from exc


def _open(kind: ConnectorKind, ident: str, settings: Settings) -> Connector:
    if kind == "confluence":
        from core.ingest.connectors.confluence import ConfluenceConnector

        return ConfluenceConnector(ident, settings)
    if kind == "notion":
        from core.ingest.connectors.notion import NotionConnector

        return NotionConnector(ident, settings)
    from core.ingest.connectors.drive import DriveConnector

    return DriveConnector(ident, settings)


def refused(service: str, status: int, what: str, settings_hint: str, detail: str = "") -> ConnectorError:
    """The one-line errors for the two failures a user fixes in the service's settings, not in Switchboard."""
    extra = f" ({detail})" if detail else ""
    if status == 401:
        return ConnectorError(f"{service} refused the credentials (HTTP 401): check {settings_hint}{extra}")
    if status == 403:
        return ConnectorError(f"{service}: no permission to read {what} (HTTP 403): grant the account access{extra}")
    return ConnectorError(f"{service}: HTTP {status} reading {what}{extra}")
