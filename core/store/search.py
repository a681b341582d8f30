"""Retrieval: embed the query, then Weaviate hybrid search (BM25 + vector) in one KB."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from core.embed import Embedder
from core.store.client import Store
from core.types import Source


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    top_k: int
    alpha: float
    source_prefix: str | None = None
    doc_id: str | None = None


async def retrieve(store: Store, embedder: Embedder, kb: str, query: str, options: SearchOptions) -> list[Source]:
    await store.check_kb(kb, embedder.name, embedder.dim)
    vector = await asyncio.to_thread(embedder.embed_query, query)
    return await store.search(
        kb,
        query,
        vector,
        alpha=options.alpha,
        limit=options.top_k,
        source_prefix=options.source_prefix,
        doc_id=options.doc_id,
    )
