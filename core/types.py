"""Neutral data types shared by the core and every surface."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """One stored piece of a document, as written to the vector store."""

    doc_id: str
    source: str  # absolute path or URL
    origin: str  # the ingest argument that found the document; `--prune` works per origin
    title: str
    section: str
    position: int
    text: str
    content_hash: str


@dataclass(frozen=True, kw_only=True)
class Source:
    """One retrieved chunk with its hybrid score, as surfaces show it."""

    title: str
    source: str
    section: str
    snippet: str
    score: float
    doc_id: str
    position: int
    text: str
