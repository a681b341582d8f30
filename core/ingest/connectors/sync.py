"""Syncing a connector source: list the service's documents, fetch only those whose updated_at changed since
the last sync (kept per document next to the registry), ingest them, and prune the ones no longer listed.
Changed documents are fetched and ingested BATCH at a time (the next batch fetched while one is embedded), so
memory holds two batches of bodies whatever the source's size; each batch's documents are remembered as soon as
it is stored, so a stopped sync resumes where it stopped.

A document skipped unfetched must not be pruned as absent, so each document's origin is its own web URL (not the
source's target): the pipeline prunes exactly the origins named, i.e. the documents that disappeared (or moved to
a new URL, as a renamed Notion page does)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError, IngestStopped, KBNotFound
from core.ingest.connectors import Connector, ConnectorError, DocRef, open_connector, parse_target
from core.ingest.pipeline import IngestReport, Progress, doc_id_for, ingest_found, prune_except
from core.ingest.registry import Registry, Source
from core.ingest.sources import Found, RawDoc
from core.sqlite import connect
from core.store.client import Store

logger = logging.getLogger(__name__)

BATCH = 32  # documents fetched, then ingested, at a time (as a web sync's pages): memory holds two batches' bodies


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

    def update(self, source_id: str, docs: dict[str, Seen]) -> None:
        """Remember these documents (a batch just stored), the others as they were."""
        with connect(self._path) as db:
            db.executemany(
                "INSERT OR REPLACE INTO connector_docs VALUES (?, ?, ?, ?)",
                [(source_id, doc_id, seen.url, seen.updated_at) for doc_id, seen in docs.items()],
            )

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


def _changed(listed: dict[str, DocRef], known: dict[str, Seen], stored: set[str]) -> list[DocRef]:
    """The documents to fetch: new, updated, moved, or remembered as unchanged but no longer in the KB."""
    return [
        ref
        for ref in listed.values()
        if known.get(ref.id) != Seen(ref.url, ref.updated_at) or doc_id_for(ref.url) not in stored
    ]


def fetch_batch(connector: Connector, refs: list[DocRef], max_bytes: int, halted: Callable[[], bool]) -> Found:
    """One batch's bodies (blocking: the service's client libraries are synchronous). A document too large
    to ingest is skipped before download when the service says its size, else once downloaded."""
    found = Found()
    for ref in refs:
        if halted():  # SIGTERM, or the sync ended early: no more requests on a connector about to close
            raise IngestStopped(
                "stopped while fetching documents (each document stored is complete); the next sync fetches the rest"
            )
        if ref.size is not None and ref.size > max_bytes:
            found.failures.append((ref.url, f"{ref.size / 1e6:.1f} MB is over FETCH_MAX_MB; not downloaded"))
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
    return found


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
    kind_ident = parse_target(source.target)
    if kind_ident is None:
        raise IngestError(f"{source.target}: not a connector target")
    states = DocStates(registry)
    known = await asyncio.to_thread(states.load, source.id)
    stored = await _stored_doc_ids(store, source.kb)
    connector = await asyncio.to_thread(open_connector, *kind_ident, settings)
    try:
        listed = await asyncio.to_thread(lambda: {ref.id: ref for ref in connector.documents()})
        return await _ingest_changed(
            connector, listed, known, stored, store, embedder, source, states, settings, progress, stop
        )
    finally:
        await asyncio.to_thread(connector.close)


async def _ingest_changed(
    connector: Connector,
    listed: dict[str, DocRef],
    known: dict[str, Seen],
    stored: set[str],
    store: Store,
    embedder: Embedder,
    source: Source,
    states: DocStates,
    settings: Settings,
    progress: Progress | None,
    stop: asyncio.Event | None,
) -> IngestReport:
    started = time.perf_counter()
    changed = _changed(listed, known, stored)
    # Skipped documents are unchanged ones whose body was never fetched.
    total = IngestReport(documents=len(listed) - len(changed), documents_unchanged=len(listed) - len(changed))
    moved = {seen.url for doc_id, seen in known.items() if doc_id in listed and listed[doc_id].url != seen.url}
    deleted = {seen.url for doc_id, seen in known.items() if doc_id not in listed} if source.prune else set()
    halt = threading.Event()  # tells the fetching thread to stop between documents

    def fetch(refs: list[DocRef]) -> Found:
        def halted() -> bool:
            return halt.is_set() or (stop is not None and stop.is_set())

        return fetch_batch(connector, refs, int(settings.fetch_max_mb * 1e6), halted)

    batches = [changed[i : i + BATCH] for i in range(0, len(changed), BATCH)]
    failed: set[str] = set()
    fetching = asyncio.ensure_future(asyncio.to_thread(fetch, batches[0])) if batches else None
    try:
        for i, refs in enumerate(batches):
            assert fetching is not None
            found = await fetching
            # The next batch is fetched while this one is embedded: two batches of bodies in memory at most.
            fetching = asyncio.ensure_future(asyncio.to_thread(fetch, batches[i + 1])) if i + 1 < len(batches) else None
            part = await ingest_found(
                store, embedder, found, kb=source.kb, settings=settings, progress=progress, stop=stop
            )
            total.include(part)
            # Failed to download or to extract: either way its stored state stays, so the next sync retries it.
            now_failed = {where for where, _ in part.failures}
            failed |= now_failed
            # Remembered once stored, so a sync stopped later does not fetch them again; a moved document only at
            # the end, as its old URL is what the prune below needs to know.
            done = {
                ref.id: Seen(ref.url, ref.updated_at)
                for ref in refs
                if ref.url not in now_failed and (ref.id not in known or known[ref.id].url == ref.url)
            }
            await asyncio.to_thread(states.update, source.id, done)
            if stop is not None and stop.is_set():
                raise IngestStopped(
                    f"stopped after {total.documents} documents (each document stored is complete); "
                    "run the same sync again to finish"
                )
    finally:
        if fetching is not None and not fetching.done():
            halt.set()  # its thread stops before its next document; the connector closes only after that
            await asyncio.wait([fetching])
            if not fetching.cancelled():
                fetching.exception()  # retrieved: the error that ended the sync is the one raised
    if stop is not None and stop.is_set():  # set after the last batch (a lost lease): no prune, no state saved
        raise IngestStopped(f"stopped after {total.documents} documents; run the same sync again to finish")
    if moved or deleted:
        keep = {doc_id_for(ref.url) for ref in listed.values()}
        total.include(await prune_except(store, source.kb, settings=settings, origins=moved | deleted, keep=keep))
    state = {doc_id: Seen(ref.url, ref.updated_at) for doc_id, ref in listed.items() if ref.url not in failed}
    # A document that failed keeps its previous state, so the next sync fetches it again.
    state.update({doc_id: known[doc_id] for doc_id, ref in listed.items() if ref.url in failed and doc_id in known})
    await asyncio.to_thread(states.save, source.id, state)
    logger.info(
        "%s: %d documents listed, %d unchanged and not fetched, %d fetched",
        source.target,
        len(listed),
        len(listed) - len(changed),
        len(changed) - len(failed),
    )
    total.seconds = time.perf_counter() - started
    return total
