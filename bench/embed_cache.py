"""An on-disk cache of document embeddings for the benches, keyed by a hash of (model, text).

Retrieval variants differ in ranking far more often than in the text they embed, so a variant should cost
Weaviate inserts and queries, not minutes of re-embedding the same chunks. Only `embed_documents` is cached:
queries stay live so the latency columns keep measuring what serving pays.
"""

from __future__ import annotations

import hashlib
import sqlite3
from array import array
from pathlib import Path

from core.embed import Embedder


class CachedEmbedder:
    """Wraps an Embedder; vectors of texts seen before come from SQLite, the rest from the embedder."""

    def __init__(self, inner: Embedder, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._inner = inner
        # The bench embeds from worker threads (asyncio.to_thread), one call at a time.
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self.hits = self.misses = 0

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self._inner.name}\x00{text}".encode()).hexdigest()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        keys = [self._key(t) for t in texts]
        found: dict[str, list[float]] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            group = keys[start : start + 500]
            rows = self._db.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(group))})", group
            )
            found.update((key, array("f", blob).tolist()) for key, blob in rows)
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            text_of = dict(zip(keys, texts, strict=True))
            vectors = self._inner.embed_documents([text_of[k] for k in missing])
            fresh = dict(zip(missing, vectors, strict=True))
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)", [(k, array("f", v).tobytes()) for k, v in fresh.items()]
            )
            self._db.commit()
            found.update(fresh)
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return [found[k] for k in keys]

    def embed_query(self, text: str) -> list[float]:
        return self._inner.embed_query(text)
