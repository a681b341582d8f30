"""Syncing a connector source: list the service's documents, fetch only those whose updated_at changed since
the last sync (kept per document next to the registry), ingest them, and prune the ones no longer listed.

A document skipped unfetched must not be pruned as absent, so each document's origin is its own web URL (not the
source's target): the pipeline prunes exactly the origins named, i.e. the documents that disappeared (or moved to
a new URL, as a renamed Notion page does)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import closing
from dataclasses import dataclass

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError, IngestStopped, KBNotFound
from core.ingest.connectors import Connector, ConnectorError, DocRef, open_connector, parse_target
from core.ingest.pipeline import IngestReport, Progress, doc_id_for, ingest_found
from core.ingest.registry import Registry, Source
from core.ingest.sources import Found, RawDoc
from core.sqlite import connect
from core.store.client import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seen:
    url: str
    updated_at: str


class DocStates:
    """What each connector source's documents looked like at their last successful ingest: the registry's
    connector_docs table (the registry creates it, and forgets a source's rows with the source)."""

    def __init__(self, registry: Registry):
        self._path = registry.path

    def load(self, source_id: str) -> dict[str, Seen]:
        with connect(self._path) as db:
            rows = db.execute("SELECT doc_id, url, updated_at FROM connector_docs WHERE source_id = ?", (source_id,))
            return {doc_id: Seen(url, updated_at) for doc_id, url, updated_at in rows}

    def save(self, source_id: str, docs: dict[str, Seen]) -> None:
        """Replace the source's state with `docs` (one transaction)."""
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM connector_docs WHERE source_id = ?", (source_id,))
            db.executemany(
                "INSERT INTO connector_docs VALUES (?, ?, ?, ?)",
                [(source_id, doc_id, seen.url, seen.updated_at) for doc_id, seen in docs.items()],
            )
            db.execute("COMMIT")


@dataclass
class _Read:
    listed: dict[str, DocRef]
    found: Found
    skipped: int


def _read(
    source: Source, settings: Settings, known: dict[str, Seen], stored: set[str], stop: asyncio.Event | None
) -> _Read:
    """Blocking: the service's client libraries are synchronous."""
    kind_ident = parse_target(source.target)
    if kind_ident is None:
        raise IngestError(f"{source.target}: not a connector target")
    with closing(open_connector(*kind_ident, settings)) as connector:
        listed = {ref.id: ref for ref in connector.documents()}
        found, skipped = _fetch_changed(connector, listed, known, stored, int(settings.fetch_max_mb * 1e6), stop)
    return _Read(listed, found, skipped)


def _fetch_changed(
    connector: Connector,
    listed: dict[str, DocRef],
    known: dict[str, Seen],
    stored: set[str],
    max_bytes: int,
    stop: asyncio.Event | None,
) -> tuple[Found, int]:
    found, skipped = Found(), 0
    for ref in listed.values():
        if stop is not None and stop.is_set():  # SIGTERM while fetching: nothing written yet, nothing to repair
            raise IngestStopped("stopped while fetching documents, before writing any; the next sync fetches them")
        if known.get(ref.id) == Seen(ref.url, ref.updated_at) and doc_id_for(ref.url) in stored:
            skipped += 1
            continue
        try:
            body = connector.fetch(ref)
        except ConnectorError as exc:  # this document only (deleted since the listing, a page it may not read)
            found.failures.append((ref.url, str(exc)))
            continue
        if len(body.data) > max_bytes:
            found.failures.append((ref.url, f"{len(body.data) / 1e6:.1f} MB is over FETCH_MAX_MB"))
            continue
        found.docs.append(
            RawDoc(source=ref.url, origin=ref.url, suffix=body.suffix, data=body.data, explicit=False, title=ref.title)
        )
    return found, skipped


async def _stored_doc_ids(store: Store, kb: str) -> set[str]:
    """A document remembered as unchanged is skipped only if the KB still holds it (the KB may have been
    deleted or re-created since)."""
    try:
        return {doc.doc_id for doc in await store.list_documents(kb)}
    except KBNotFound:
        return set()


async def sync_connector(
    registry: Registry,
    store: Store,
    embedder: Embedder,
    source: Source,
    *,
    settings: Settings,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> IngestReport:
    states = DocStates(registry)
    known = await asyncio.to_thread(states.load, source.id)
    read = await asyncio.to_thread(_read, source, settings, known, await _stored_doc_ids(store, source.kb), stop)
    moved = {
        seen.url for doc_id, seen in known.items() if doc_id in read.listed and read.listed[doc_id].url != seen.url
    }
    deleted = {seen.url for doc_id, seen in known.items() if doc_id not in read.listed} if source.prune else set()
    report = await ingest_found(
        store,
        embedder,
        read.found,
        kb=source.kb,
        settings=settings,
        prune_origins=moved | deleted,
        progress=progress,
        stop=stop,
    )
    # Skipped documents are unchanged ones whose body was never fetched.
    report.documents += read.skipped
    report.documents_unchanged += read.skipped
    failed = {where for where, _ in report.failures}
    state = {doc_id: Seen(ref.url, ref.updated_at) for doc_id, ref in read.listed.items() if ref.url not in failed}
    # A document that failed keeps its previous state, so the next sync fetches it again.
    state.update(
        {doc_id: known[doc_id] for doc_id, ref in read.listed.items() if ref.url in failed and doc_id in known}
    )
    await asyncio.to_thread(states.save, source.id, state)
    logger.info(
        "%s: %d documents listed, %d unchanged and not fetched, %d fetched",
        source.target,
        len(read.listed),
        read.skipped,
        len(read.found.docs),
    )
    return report
