"""The curated questions' vectors in memory, for matching. Each process loads them from curated.sqlite3 and
reloads them when any process changed the table (a generation counter, one tiny read per question). Vectors made
with another embedding model are re-embedded on load, so EMBED_MODEL can change."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.embed import Embedder
from core.sqlite import connect
from core.vectors import unit_rows

logger = logging.getLogger(__name__)


def embed_unit(embedder: Embedder, texts: list[str]) -> list[bytes]:
    """Unit vectors (float32 bytes) of the texts, so that a dot product is their cosine."""
    if not texts:
        return []
    matrix = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    return [v.tobytes() for v in unit_rows(matrix)]


@dataclass(frozen=True, kw_only=True)
class _Bot:
    """One bot's phrasings as a matrix of unit vectors."""

    ids: list[str]
    texts: list[str]
    vectors: np.ndarray


class QuestionIndex:
    def __init__(self, path: Path, embedder: Callable[[], Embedder]):
        self._path = path
        self._embedder = embedder  # asked for only when there is something to embed
        self._lock = threading.Lock()
        self._generation = -1
        self._bots: dict[str, _Bot] = {}

    def _load(self) -> None:
        """Reload the vectors if any process changed the table since the last load."""
        with connect(self._path) as db:
            (generation,) = db.execute("SELECT n FROM generation").fetchone()
            if generation == self._generation:
                return
            rows = db.execute("SELECT curated_id, position, text, embed_model FROM phrasings").fetchall()
            if rows:
                embedder = self._embedder()
                stale = [r for r in rows if r[3] != embedder.name]
                if stale:  # EMBED_MODEL changed: re-embed with the current model, once
                    logger.info("re-embedding %d curated questions with %s", len(stale), embedder.name)
                    vectors = embed_unit(embedder, [r[2] for r in stale])
                    db.execute("BEGIN IMMEDIATE")
                    for (curated_id, position, _, _), vector in zip(stale, vectors, strict=True):
                        db.execute(
                            "UPDATE phrasings SET vector = ?, embed_model = ? WHERE curated_id = ? AND position = ?",
                            (vector, embedder.name, curated_id, position),
                        )
                    db.execute("COMMIT")
            rows = db.execute(
                "SELECT c.bot, p.curated_id, p.text, p.vector FROM phrasings p JOIN curated c ON c.id = p.curated_id"
            ).fetchall()
        grouped: dict[str, list[tuple[str, str, bytes]]] = {}
        for bot, curated_id, text, vector in rows:
            grouped.setdefault(bot, []).append((curated_id, text, vector))
        self._bots = {
            bot: _Bot(
                ids=[r[0] for r in items],
                texts=[r[1] for r in items],
                vectors=np.vstack([np.frombuffer(r[2], dtype=np.float32) for r in items]),
            )
            for bot, items in grouped.items()
        }
        self._generation = generation

    def nearest(self, bot: str, question: str) -> tuple[str, str, float] | None:
        """(curated id, phrasing, cosine) of the bot's phrasing closest to the question; None when the bot has
        none (then nothing is embedded)."""
        with self._lock:
            self._load()
            index = self._bots.get(bot)
        if index is None:
            return None
        scores = index.vectors @ np.frombuffer(embed_unit(self._embedder(), [question])[0], dtype=np.float32)
        best = int(np.argmax(scores))
        return index.ids[best], index.texts[best], float(scores[best])
