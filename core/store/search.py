"""Retrieval: embed the query, Weaviate hybrid search (BM25 + vector) in one KB, optionally rerank, then keep at
most SEARCH_DOC_CAP passages per document so one long document cannot take every slot."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.config import (
    DEFAULT_DOC_CAP,
    DEFAULT_DOC_DAMPING,
    DEFAULT_DOC_LENGTH_PENALTY,
    DEFAULT_KEYWORD_FIELDS,
    Fusion,
    Settings,
)
from core.embed import Embedder
from core.errors import RerankError
from core.store.client import Store
from core.store.rerank import Reranker
from core.types import Source

logger = logging.getLogger(__name__)

# Candidates fetched per result slot when documents are capped: enough that capping still fills top_k.
OVERFETCH = 4
# The candidate pool when documents are scored by the sum of their passages (damping): fixed, so a document's
# score does not depend on how many results were asked for.
DOCUMENT_POOL = 40


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    top_k: int
    alpha: float
    keyword_fields: tuple[str, ...] = DEFAULT_KEYWORD_FIELDS
    doc_cap: int = DEFAULT_DOC_CAP  # passages per document in the results; 0: no cap
    fusion: Fusion = "relative"
    # A document's score: its best passage's plus this share of its other candidates' (0: best passage only).
    doc_damping: float = DEFAULT_DOC_DAMPING
    # A document's score loses this × ln(its chunk count) (0: length ignored).
    doc_length_penalty: float = DEFAULT_DOC_LENGTH_PENALTY
    keyword_question_words: bool = False  # True: BM25 also matches a question's opening ("how do I")
    source_prefix: str | None = None
    doc_id: str | None = None
    relevance: bool = False  # fetch the passages' vectors to give each its Source.relevance

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SearchOptions:
        """The configured retrieval (SEARCH_*), with per-call overrides such as top_k or a filter; an override of
        None keeps the configured value."""
        configured = cls(
            top_k=settings.search_top_k,
            alpha=settings.search_alpha,
            keyword_fields=settings.search_keyword_fields,
            doc_cap=settings.search_doc_cap,
            doc_damping=settings.search_doc_damping,
            doc_length_penalty=settings.search_doc_length_penalty,
            keyword_question_words=settings.search_keyword_question_words,
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
    # The length penalty is sized for relative-score fusion's 0–1 scores; ranked fusion's are a few hundredths,
    # and a reranker's are on its own scale (and it reads each passage, so chance matches are its job).
    penalty = options.doc_length_penalty if options.fusion == "relative" and reranker is None else 0.0
    # The penalty reorders the candidates fetched anyway (4× top-k): a pool of 40 at every k measured +0.005 on
    # the third-party sets but cost a fifth more search time (docs/benchmarks.md).
    fetch = options.top_k * OVERFETCH if options.doc_cap else options.top_k
    if options.doc_damping:
        fetch = max(fetch, DOCUMENT_POOL)
    if reranker is not None:
        fetch = max(fetch, reranker.candidates)
    found = await store.search(
        kb,
        query,
        vector,
        alpha=options.alpha,
        limit=fetch,
        keyword_fields=options.keyword_fields,
        fusion=options.fusion,
        keyword_query=None if options.keyword_question_words else keyword_query(query),
        source_prefix=options.source_prefix,
        doc_id=options.doc_id,
        relevance=options.relevance,
    )
    if reranker is not None and found:
        found = await _reranked(reranker, query, found)
    ranked = by_document(found, damping=options.doc_damping, length_penalty=penalty)
    return cap_per_document(ranked, options.doc_cap)[: options.top_k]


# A question's opening ("How do I", "What's", "Why can't you"): its form, not its subject, and not among
# Weaviate's English stopwords, so BM25 would favour every passage that says "how do I". Only the opening goes:
# later words may be the subject ("my" and "do" are Perl keywords).
_QUESTION_OPENING = re.compile(
    r"^\s*(?:(?:how|what|why|when|where|which|who)(?:['’]s)?\s+)"  # phones type ’ for '
    r"(?:(?:do|does|did|can|can['’]t|could|should|would|will|is|are)\s+)?(?:(?:i|we|you|one)\b\s*)?",
    re.IGNORECASE,
)


def keyword_query(query: str) -> str:
    """The query for BM25 without its question opening and question marks; the whole query when nothing else
    is left."""
    stripped = " ".join(_QUESTION_OPENING.sub("", query).replace("?", " ").split())
    return stripped or query


def by_document(ranked: Sequence[Source], *, damping: float = 0.0, length_penalty: float = 0.0) -> list[Source]:
    """Passages reordered by their documents: each passage's score loses length_penalty × ln(its document's chunk
    count); with damping, documents are ordered by that score of their best passage + damping × the sum of their
    other candidates' scores, each document's passages together. Both 0 keep the ranked order.

    The penalty is the chance correction a best-of-n score needs: a document of 40 chunks has 40 tries at one
    passage that happens to match, a one-passage answer one. On the third-party sets this is what keeps long
    manuals from crowding out the short page that answers (docs/benchmarks.md). Without damping, passages stay
    interleaved across documents, so a cap above 1 keeps the best passages, not one document's weaker ones."""

    def penalised(source: Source) -> float:
        return source.score - length_penalty * math.log(source.doc_chunks)

    if not damping:
        return sorted(ranked, key=penalised, reverse=True) if length_penalty else list(ranked)
    groups: dict[str, list[Source]] = {}
    for source in ranked:
        groups.setdefault(source.doc_id, []).append(source)

    def score(group: list[Source]) -> float:
        return penalised(group[0]) + damping * sum(s.score for s in group[1:])

    return [source for group in sorted(groups.values(), key=score, reverse=True) for source in group]


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
