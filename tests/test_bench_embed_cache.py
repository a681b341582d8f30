"""The benches' on-disk embedding cache: same vectors, in order, each text embedded once per model."""

from __future__ import annotations

from pathlib import Path

from bench.embed_cache import CachedEmbedder


class Counting:
    """A deterministic embedder that records what it was asked to embed."""

    def __init__(self, name: str = "fake-1") -> None:
        self.name, self.dim = name, 3
        self.asked: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.asked += texts
        return [[float(len(t)), float(sum(map(ord, t)) % 97), 0.5] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_each_text_is_embedded_once_and_vectors_come_back_in_order(tmp_path: Path) -> None:
    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path / "cache.sqlite")
    first = cached.embed_documents(["alpha", "beta", "alpha"])
    assert inner.asked == ["alpha", "beta"]  # the repeat within a call is embedded once
    assert first == Counting().embed_documents(["alpha", "beta", "alpha"])
    # A new process (a new cache object on the same file) embeds only what it has not seen.
    again = CachedEmbedder(inner, tmp_path / "cache.sqlite")
    assert again.embed_documents(["gamma", "beta"]) == Counting().embed_documents(["gamma", "beta"])
    assert inner.asked == ["alpha", "beta", "gamma"]
    assert (again.hits, again.misses) == (1, 1)
    assert (again.name, again.dim) == ("fake-1", 3)


def test_another_model_does_not_reuse_the_vectors_and_queries_are_never_cached(tmp_path: Path) -> None:
    CachedEmbedder(Counting("fake-1"), tmp_path / "cache.sqlite").embed_documents(["alpha"])
    other = Counting("fake-2")
    CachedEmbedder(other, tmp_path / "cache.sqlite").embed_documents(["alpha"])
    assert other.asked == ["alpha"]
    querying = CachedEmbedder(other, tmp_path / "cache.sqlite")
    querying.embed_query("alpha")
    assert other.asked == ["alpha", "alpha"]  # latency columns keep paying for the query embedding
