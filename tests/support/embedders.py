"""Embedders for tests: a real one wrapped, so a test can watch or script what reaches it."""

from __future__ import annotations

from dataclasses import dataclass

from core.embed import Embedder


@dataclass
class Wrapped:
    """The wrapped embedder's identity and queries; subclasses watch or script `embed_documents`."""

    inner: Embedder

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)
