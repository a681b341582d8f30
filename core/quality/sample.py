"""A KB's chunks for the quality tools: read them all, then draw them stratified across documents (round-robin
over documents in a seeded random order, a random chunk of each per round) without near-duplicates."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from core.errors import EmptyKB
from core.store.client import Store
from core.types import Source, shown_source

MIN_WORDS = 20  # shorter chunks (a heading, a link line) answer no question worth asking
NEAR_DUPLICATE = 0.6  # Jaccard similarity of word 5-shingles at which two chunks count as the same text
_PAGE = 500
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, kw_only=True)
class KBChunk:
    id: str
    doc_id: str
    source: str
    origin: str
    title: str
    section: str
    position: int
    text: str

    @property
    def shown(self) -> str:
        """The source as answers show it and `switchboard eval` matches it."""
        return shown_source(self.source, self.origin)

    def as_source(self) -> Source:
        """As retrieval would hand it to the answer prompt."""
        return Source(
            title=self.title,
            source=self.source,
            origin=self.origin,
            section=self.section,
            snippet=self.text[:200],
            score=1.0,
            relevance=1.0,
            doc_id=self.doc_id,
            position=self.position,
            text=self.text,
        )


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingles(text: str, size: int = 5) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + size]) for i in range(max(1, len(w) - size + 1))}


def near_duplicates(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> bool:
    return len(a & b) / (len(a | b) or 1) >= NEAR_DUPLICATE


async def read_chunks(store: Store, kb: str) -> list[KBChunk]:
    """Every chunk of the KB long enough to ask about, in a stable order (document, position)."""
    await store.require_chunks(kb)
    chunks: list[KBChunk] = []
    after: str | None = None
    while True:
        page = await store.chunk_page(kb, after=after, limit=_PAGE)
        for uuid, p in page:
            chunks.append(
                KBChunk(
                    id=uuid,
                    doc_id=str(p["doc_id"]),
                    source=str(p["source"]),
                    origin=str(p["origin"]),
                    title=str(p["title"]),
                    section=str(p.get("section") or ""),
                    position=int(p["position"]),
                    text=str(p["text"]),
                )
            )
        if len(page) < _PAGE:
            break
        after = page[-1][0]
    usable = sorted((c for c in chunks if len(words(c.text)) >= MIN_WORDS), key=lambda c: (c.doc_id, c.position))
    if not usable:
        raise EmptyKB(f"knowledge base {kb!r} has no chunk of at least {MIN_WORDS} words to ask about")
    return usable


def stratified(chunks: Iterable[KBChunk], rng: random.Random) -> Iterator[KBChunk]:
    """Chunks one document at a time in turn (documents in random order, a random chunk of each per round),
    skipping any that nearly repeats one already drawn. Lazy: draw as many as needed."""
    by_doc: dict[str, list[KBChunk]] = {}
    for chunk in chunks:
        by_doc.setdefault(chunk.doc_id, []).append(chunk)
    queues = [by_doc[d] for d in sorted(by_doc)]
    rng.shuffle(queues)
    for queue in queues:
        rng.shuffle(queue)
    drawn: list[set[tuple[str, ...]]] = []
    while queues:
        for queue in list(queues):
            chunk = queue.pop()
            if not queue:
                queues.remove(queue)
            text = shingles(chunk.text)
            if any(near_duplicates(text, seen) for seen in drawn):
                continue
            drawn.append(text)
            yield chunk
