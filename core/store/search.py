"""Retrieval: embed the query, Weaviate hybrid search (BM25 + vector) in one KB, optionally rerank, then keep at
most SEARCH_DOC_CAP passages per document so one long document cannot take every slot."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.config import DEFAULT_DOC_CAP, DEFAULT_KEYWORD_FIELDS, Settings
from core.embed import Embedder
from core.errors import RerankError
from core.store.client import Store
from core.store.rerank import Reranker
from core.types import Source

logger = logging.getLogger(__name__)

# Candidates fetched per result slot when documents are capped: enough that capping still fills top_k.
OVERFETCH = 4


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    top_k: int
    alpha: float
    keyword_fields: tuple[str, ...] = DEFAULT_KEYWORD_FIELDS
    doc_cap: int = DEFAULT_DOC_CAP  # passages per document in the results; 0: no cap
    source_prefix: str | None = None
    doc_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SearchOptions:
        """The configured retrieval (SEARCH_*), with per-call overrides such as top_k or a filter; an override of
        None keeps the configured value."""
        configured = cls(
            top_k=settings.search_top_k,
            alpha=settings.search_alpha,
            keyword_fields=settings.search_keyword_fields,
            doc_cap=settings.search_doc_cap,
        )
        return dataclasses.replace(configured, **{name: v for name, v in overrides.items() if v is not None})


async def retrieve(
    store: Store,
    embedder: Embedder,
    kb: str,
    query: str,
    options: SearchOptions,
    reranker: Reranker | None = None,
) -> list[Source]:
    await store.check_kb(kb, embedder.name, embedder.dim)
    vector = await asyncio.to_thread(embedder.embed_query, query)
    fetch = options.top_k * OVERFETCH if options.doc_cap else options.top_k
    if reranker is not None:
        fetch = max(fetch, reranker.candidates)
    found = await store.search(
        kb,
        query,
        vector,
        alpha=options.alpha,
        limit=fetch,
        keyword_fields=options.keyword_fields,
        source_prefix=options.source_prefix,
        doc_id=options.doc_id,
    )
    if reranker is not None and found:
        found = await _reranked(reranker, query, found)
    return cap_per_document(found, options.doc_cap)[: options.top_k]


def cap_per_document(ranked: Sequence[Source], cap: int) -> list[Source]:
    """Each document's best `cap` passages, in rank order (cap 0: all)."""
    if not cap:
        return list(ranked)
    seen: Counter[str] = Counter()
    kept = []
    for source in ranked:
        seen[source.doc_id] += 1
        if seen[source.doc_id] <= cap:
            kept.append(source)
    return kept


async def _reranked(reranker: Reranker, query: str, found: list[Source]) -> list[Source]:
    """The reranker's order, each score replaced by its relevance score; its failure keeps the hybrid order,
    because a missing reranker must never cost the answer."""
    try:
        ranked = await reranker.rerank(query, [s.text for s in found])
    except RerankError as exc:
        logger.warning("reranking skipped, hybrid order kept: %s", exc)
        return found
    reranked = [dataclasses.replace(found[i], score=score) for i, score in ranked]
    omitted = sorted(set(range(len(found))) - {i for i, _ in ranked})  # a server that returned fewer: after
    return reranked + [found[i] for i in omitted]
