"""What a knowledge base holds in Weaviate: a collection with these properties (one per build, behind the KB's
alias: core.store.client), deterministic chunk ids, the embedder check, and the records the store returns about a
KB's contents."""

from __future__ import annotations

from dataclasses import dataclass

from weaviate.classes.config import DataType, Property, Tokenization
from weaviate.util import generate_uuid5

from core.errors import EmbedderMismatch
from core.kb import KBMeta


def chunk_uuid(doc_id: str, position: int) -> str:
    """Deterministic ids make every write an upsert: a re-run after a crash overwrites, never duplicates."""
    return str(generate_uuid5(f"{doc_id}:{position}"))


def _keyword(name: str, data_type: DataType = DataType.TEXT) -> Property:
    """Exact-match, filterable, kept out of BM25."""
    return Property(
        name=name, data_type=data_type, tokenization=Tokenization.FIELD, index_searchable=False, index_filterable=True
    )


# Added after the first KBs were built: Store.ensure_kb adds it to an older collection, and the next ingest fills it.
DOC_CHUNKS = Property(name="doc_chunks", data_type=DataType.INT, index_filterable=True)  # aggregates count it

PROPERTIES = [
    Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
    Property(name="title", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
    Property(name="section", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
    _keyword("doc_id"),
    _keyword("source"),
    _keyword("origin"),
    _keyword("content_hash"),
    Property(name="position", data_type=DataType.INT, index_filterable=True),
    Property(name="ingested_at", data_type=DataType.DATE),
    DOC_CHUNKS,
]


def check_embedder(kb: str, meta: KBMeta, model: str, dim: int) -> None:
    if meta.embed_model != model or meta.embed_dim != dim:
        raise EmbedderMismatch(
            f"knowledge base {kb!r} was built with {meta.embed_model} ({meta.embed_dim} dims) but the configured "
            f"embedder is {model} ({dim} dims); set EMBED_MODEL={meta.embed_model}, or switch the KB to this "
            f"embedder with `switchboard kb reembed {kb} --embed-model {model}`"
        )


@dataclass(frozen=True, kw_only=True)
class KBStats:
    name: str
    documents: int
    chunks: int
    meta: KBMeta


@dataclass(frozen=True, kw_only=True)
class StoredChunk:
    position: int
    content_hash: str
    origin: str
    source: str
    doc_chunks: int | None  # None: stored before the count existed


@dataclass(frozen=True, kw_only=True)
class DocumentInfo:
    doc_id: str
    title: str
    source: str
    origin: str
    chunks: int
