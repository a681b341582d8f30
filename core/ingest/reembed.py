"""Re-embed a knowledge base with another embedder, without downtime and without re-reading its sources.

The stored chunks are read back from Weaviate, embedded as this version's ingestion embeds them (KBMeta.embed_text;
reembedding with the same model is how an older KB moves to it) and written with the same ids into a new
versioned collection; the KB's alias then switches to it in one call and
the old collection is dropped. Until that switch every search is answered from the old collection; a failure or
Ctrl-C before it removes the half-built collection and leaves the KB as it was. The KB's write lock is held
throughout, so no ingest can change the old collection while it is being copied.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from core.config import Settings
from core.embed import Embedder
from core.ingest.lock import kb_write_lock
from core.ingest.pipeline import Progress, embedding_text
from core.kb import EmbedText, KBMeta
from core.store.client import Store


@dataclass(frozen=True, kw_only=True)
class ReembedReport:
    chunks: int
    before: KBMeta
    after: KBMeta
    seconds: float


async def reembed(
    store: Store, embedder: Embedder, *, kb: str, settings: Settings, progress: Progress
) -> ReembedReport:
    started = time.perf_counter()

    def waiting(holder: str) -> None:
        progress.stage(f"Waiting for another writer to finish ({holder})", 0)

    async with kb_write_lock(settings, kb, on_wait=waiting):
        before = await store.kb_meta(kb)
        await store.fill_doc_chunks(kb)  # copied as stored: chunks from before document counts get theirs first
        _, total = await store.counts(kb)
        # The new embedder's identity; an endpoint learns its vector size here, before anything is built.
        after = KBMeta(
            embed_model=embedder.name,
            embed_dim=await asyncio.to_thread(lambda: embedder.dim),
            chunk_size=before.chunk_size,
            chunk_overlap=before.chunk_overlap,
        )
        target = await store.new_version(kb, after)
        try:
            progress.stage("Re-embedding", total)
            copied = await _copy(store, embedder, kb, target, after.embed_text, settings.embed_batch_size * 2, progress)
        except BaseException:  # Ctrl-C (cancellation) too: the KB keeps serving from its old collection
            await store.drop_collection(target)
            raise
        await store.switch_kb(kb, target, after)
    return ReembedReport(chunks=copied, before=before, after=after, seconds=time.perf_counter() - started)


async def _copy(
    store: Store, embedder: Embedder, kb: str, target: str, how: EmbedText, batch: int, progress: Progress
) -> int:
    copied = 0
    after: str | None = None
    while page := await store.chunk_page(kb, after=after, limit=batch):
        texts = [
            embedding_text(str(p.get("title") or ""), str(p.get("section") or ""), str(p["text"]), how) for _, p in page
        ]
        vectors = await asyncio.to_thread(embedder.embed_documents, texts)
        await store.copy_chunks(target, page, vectors)
        copied += len(page)
        progress.advance(len(page))
        after = page[-1][0]
    return copied
