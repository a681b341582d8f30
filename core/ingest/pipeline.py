"""Ingestion: discover → extract → chunk → hash → (embed what changed) → upsert → delete stale → prune.

Crash-safe by construction: chunk ids are derived from (document, position), so every write is an
upsert, and each run compares what is stored with what should be stored chunk by chunk. A run that was
interrupted anywhere (Ctrl-C, Weaviate killed mid-batch) is repaired by simply running it again. Asked to
stop (`stop`, set on SIGTERM), it stops between batches once the document in progress is complete, with its
stale chunks removed: every document is then either all old or all new.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Protocol

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError, IngestStopped
from core.ingest.chunk import SECTION_SEP, chunk_markdown
from core.ingest.extract import Limits, extract
from core.ingest.lock import kb_write_lock
from core.ingest.plain import plain_text
from core.ingest.sources import Found, RawDoc, discover, normalise_origin
from core.kb import LEGACY_EMBED_TEXT, MARKDOWN_EMBED_TEXT, EmbedText, KBMeta
from core.metrics import INGEST_CHUNKS, INGESTS, counted
from core.store.client import Store
from core.store.schema import StoredChunk, chunk_uuid
from core.types import Chunk

if TYPE_CHECKING:  # registry imports this module
    from core.ingest.registry import SyncRun

logger = logging.getLogger(__name__)


class Progress(Protocol):
    """How ingestion reports progress; the CLI renders it with rich, tests ignore it."""

    def stage(self, description: str, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


class _Silent:
    def stage(self, description: str, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass


@dataclass
class IngestReport:
    documents: int = 0
    documents_unchanged: int = 0
    documents_pruned: int = 0
    documents_skipped: int = 0  # web pages not downloaded: unchanged by their validators or sitemap <lastmod>
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def include(self, part: IngestReport) -> None:
        """Add a batch's counts and failures (a streamed ingest's total; `seconds` is the caller's)."""
        for f in fields(IngestReport):
            if f.name == "failures":
                self.failures.extend(part.failures)
            elif f.name != "seconds":
                setattr(self, f.name, getattr(self, f.name) + getattr(part, f.name))


def count_summary(report: IngestReport | SyncRun) -> str:
    """What an ingest or a recorded sync did, in one line: the CLI prints it, the scheduler logs it."""
    skipped = f", {report.documents_skipped} not downloaded" if report.documents_skipped else ""
    pruned = f", {report.documents_pruned} pruned" if report.documents_pruned else ""
    return (
        f"{report.documents} documents ({report.documents_unchanged} unchanged{skipped}{pruned}); chunks "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, {report.deleted} deleted"
    )


def doc_id_for(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:32]


def embedding_text(title: str, section: str, text: str, how: EmbedText) -> str:
    """What a chunk's vector is computed from, as its KB records (KBMeta.embed_text). The section trail travels
    with the text, so a chunk that says "run it" under "Install Docker" still matches "install Docker"."""
    parts: tuple[str, ...]
    if how == LEGACY_EMBED_TEXT:
        parts = (title, section, text)
    elif how == MARKDOWN_EMBED_TEXT:
        parts = (section, text)
    else:
        parts = (section, plain_text(text) or text)  # a bare link has no words: embed it as written
    return "\n".join(part for part in parts if part)


def chunks_for(doc: RawDoc, settings: Settings) -> list[Chunk]:
    fallback = doc.title or doc.source.rstrip("/").rsplit("/", 1)[-1]
    extracted = extract(doc.data, doc.suffix, fallback, Limits.from_settings(settings))
    doc_id = doc_id_for(doc.source)
    pieces = chunk_markdown(
        extracted.markdown,
        size=settings.chunk_size,
        overlap=settings.chunk_overlap,
        merge_below=settings.chunk_merge_below,
    )
    chunks = []
    for position, piece in enumerate(pieces):
        section = _without_title(piece.section, extracted.title)
        digest = hashlib.sha256("\x1f".join((extracted.title, section, piece.text)).encode()).hexdigest()
        chunks.append(
            Chunk(
                doc_id=doc_id,
                source=doc.source,
                origin=doc.origin,
                title=extracted.title,
                section=section,
                position=position,
                text=piece.text,
                content_hash=digest,
                doc_chunks=len(pieces),
            )
        )
    return chunks


def _without_title(section: str, title: str) -> str:
    """The heading trail below the document's own title, so citations read 'Title › Section' once."""
    if section == title:
        return ""
    return section.removeprefix(title + SECTION_SEP)


def _needs_write(chunk: Chunk, stored: StoredChunk | None) -> bool:
    return stored is None or stored.content_hash != chunk.content_hash or stored.origin != chunk.origin


def _needs_count(chunk: Chunk, stored: StoredChunk | None) -> bool:
    """Unchanged, but its document grew or shrank (or it was stored before the count): a property update, no
    re-embedding."""
    return stored is not None and not _needs_write(chunk, stored) and stored.doc_chunks != chunk.doc_chunks


async def ingest(
    store: Store,
    embedder: Embedder,
    inputs: Sequence[str],
    *,
    kb: str,
    settings: Settings,
    prune: bool = False,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> IngestReport:
    progress = progress or _Silent()
    started = time.perf_counter()
    progress.stage("Reading sources", len(inputs))
    found = await discover(list(inputs), settings)
    origins = {normalise_origin(raw) for raw in inputs} if prune else ()
    report = await ingest_found(
        store, embedder, found, kb=kb, settings=settings, prune_origins=origins, progress=progress, stop=stop
    )
    report.seconds = time.perf_counter() - started  # with the reading (fetching) of the sources
    return report


@counted(INGESTS)
async def ingest_found(
    store: Store,
    embedder: Embedder,
    found: Found,
    *,
    kb: str,
    settings: Settings,
    prune_origins: Collection[str] = (),
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> IngestReport:
    """Ingest documents already read (from sources, or received as uploads). With `prune_origins`, documents
    from those origins that are not in `found` are removed. Raises IngestStopped once `stop` was set."""
    progress = progress or _Silent()
    started = time.perf_counter()
    report = IngestReport()
    report.failures.extend(found.failures)

    progress.stage("Extracting and chunking", len(found.docs))
    planned: dict[str, list[Chunk]] = {}
    for doc in found.docs:
        try:
            planned[doc_id_for(doc.source)] = await asyncio.to_thread(chunks_for, doc, settings)
        except IngestError as exc:
            if doc.explicit:
                raise IngestError(f"{doc.source}: {exc}") from exc
            report.failures.append((doc.source, str(exc)))
        progress.advance(1)
    failed_ids = {doc_id_for(source) for source, _ in report.failures}

    # Planning reads the stored chunks: from here to the last delete, no other writer may change them.
    def waiting(holder: str) -> None:
        progress.stage(f"Waiting for another writer to finish ({holder})", 0)

    async with kb_write_lock(settings, kb, on_wait=waiting):
        meta = KBMeta(
            embed_model=embedder.name,
            embed_dim=embedder.dim,
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
        )
        # An existing KB's own way of embedding (read fresh: a reembed elsewhere may have changed it), so its
        # vectors stay comparable.
        embed_text = (await store.ensure_kb(kb, meta)).embed_text
        # Without prune only the documents read are compared: a streamed ingest's batch reads its own, not the KB.
        stored = await store.stored_chunks(kb, None if prune_origins else planned.keys())

        to_write: list[Chunk] = []
        recount: dict[str, dict[str, int]] = {}  # by document: chunk id -> the document's new chunk count
        stale: dict[str, list[str]] = {}  # by document
        for doc_id, chunks in planned.items():
            have = stored.get(doc_id, {})
            wanted = {chunk_uuid(c.doc_id, c.position): c for c in chunks}
            changed = [c for uid, c in wanted.items() if _needs_write(c, have.get(uid))]
            to_write.extend(changed)
            recount[doc_id] = {uid: c.doc_chunks for uid, c in wanted.items() if _needs_count(c, have.get(uid))}
            report.added += sum(1 for c in changed if chunk_uuid(c.doc_id, c.position) not in have)
            report.updated += sum(1 for c in changed if chunk_uuid(c.doc_id, c.position) in have)
            report.unchanged += len(chunks) - len(changed)
            stale[doc_id] = [uid for uid in have if uid not in wanted]
            report.documents_unchanged += int(not changed and len(have) == len(wanted))
        report.documents = len(planned)

        pruned = prunable(stored, prune_origins, keep=planned.keys() | failed_ids)
        stale.update(pruned)
        report.documents_pruned += len(pruned)

        progress.stage("Embedding and storing", len(to_write))
        written = await _embed_and_store(
            store, embedder, kb, to_write, embed_text, settings.embed_batch_size * 2, progress, stop
        )
        INGEST_CHUNKS.inc(written)
        untouched = {c.doc_id for c in to_write[written:]}  # documents not started when asked to stop
        await store.set_doc_chunks(
            kb, {uid: n for doc_id, ids in recount.items() if doc_id not in untouched for uid, n in ids.items()}
        )
        gone = [uid for doc_id, uids in stale.items() if doc_id not in untouched for uid in uids]
        if gone:
            await store.delete_chunks(kb, gone)
        if untouched:
            raise IngestStopped(
                f"stopped before {len(untouched)} of {len(planned)} documents (each document stored is complete); "
                "run the same command again to finish"
            )
    report.deleted = len(gone)
    report.seconds = time.perf_counter() - started
    return report


def prunable(
    stored: dict[str, dict[str, StoredChunk]], origins: Collection[str], keep: Collection[str]
) -> dict[str, list[str]]:
    """The chunks, by document, of stored documents from `origins` that are not to be kept."""
    if not origins:
        return {}
    return {
        doc_id: list(have)
        for doc_id, have in stored.items()
        if doc_id not in keep and any(c.origin in origins for c in have.values())
    }


async def prune_except(
    store: Store, kb: str, *, settings: Settings, origins: Collection[str], keep: set[str]
) -> IngestReport:
    """Remove the documents from `origins` whose ids are not in `keep` (a streamed ingest's prune, once every
    batch is stored: it holds the ids it saw, never the documents)."""
    report = IngestReport()
    async with kb_write_lock(settings, kb):
        stale = prunable(await store.stored_chunks(kb), origins, keep)
        gone = [uid for uids in stale.values() for uid in uids]
        if gone:
            await store.delete_chunks(kb, gone)
    report.documents_pruned, report.deleted = len(stale), len(gone)
    return report


async def _embed_and_store(
    store: Store,
    embedder: Embedder,
    kb: str,
    chunks: list[Chunk],
    how: EmbedText,
    batch: int,
    progress: Progress,
    stop: asyncio.Event | None = None,
) -> int:
    """Embed batch n+1 in a worker thread while batch n is written, so Weaviate time hides behind the CPU.
    Returns how many chunks were written: all, or once `stop` is set, those up to the end of the document in
    progress (`chunks` holds each document's chunks together)."""
    batches = [chunks[i : i + batch] for i in range(0, len(chunks), batch)]
    if not batches:
        return 0

    def embed(group: list[Chunk]) -> list[list[float]]:
        return embedder.embed_documents([embedding_text(c.title, c.section, c.text, how) for c in group])

    written = 0
    pending = asyncio.create_task(asyncio.to_thread(embed, batches[0]))
    try:
        for i, group in enumerate(batches):
            if stop is not None and stop.is_set():
                break
            vectors = await pending
            if i + 1 < len(batches):
                pending = asyncio.create_task(asyncio.to_thread(embed, batches[i + 1]))
            await store.upsert(kb, group, vectors)
            written += len(group)
            progress.advance(len(group))
    finally:
        if not pending.done():
            pending.cancel()
    if 0 < written < len(chunks):  # stopped: complete the document in progress
        doc_id = chunks[written - 1].doc_id
        rest = list(itertools.takewhile(lambda c: c.doc_id == doc_id, chunks[written:]))
        for i in range(0, len(rest), batch):
            group = rest[i : i + batch]
            await store.upsert(kb, group, await asyncio.to_thread(embed, group))
            written += len(group)
            progress.advance(len(group))
    return written
