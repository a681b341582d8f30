"""The OpenAI-compatible embedder, through the real openai client, against a loopback fake endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.config import Settings
from core.embed import Embedder, OpenAIEmbedder, create_embedder
from core.errors import ConfigError, EmbedderMismatch, EmbedError
from core.ingest.pipeline import ingest
from core.store.client import Store
from core.store.search import SearchOptions, retrieve
from tests.fakes.openai_server import DIM, FakeOpenAI


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


async def test_ingest_and_search_with_an_openai_compatible_endpoint(
    fake: FakeOpenAI, settings: Settings, store: Store, embedder: Embedder, kb: str, tmp_path: Path
) -> None:
    remote_settings = settings.model_copy(
        update={
            "embed_provider": "openai",
            "embed_model": "fake-embed-1",
            "embed_base_url": fake.base_url,
            "embed_api_key": SecretStr("sk-test"),
            "embed_batch_size": 2,
        }
    )
    remote = create_embedder(remote_settings)
    assert isinstance(remote, OpenAIEmbedder) and remote.dim == DIM
    for name, text in {
        "a.md": "# Lighthouse\n\nThe lighthouse keeper trims the lamp wick.",
        "b.md": "# Orchard\n\nApples ripen in the orchard in autumn.",
        "c.md": "# Harbour\n\nFerries leave the harbour at dawn.",
    }.items():
        (tmp_path / name).write_text(text)
    report = await ingest(store, remote, [str(tmp_path)], kb=kb, settings=remote_settings)
    assert report.added == 3

    hits = await retrieve(store, remote, kb, "apples orchard autumn", SearchOptions(top_k=1, alpha=1.0))
    assert hits[0].source.endswith("b.md")
    embed_calls = [body for path, _, body in fake.requests if path == "/v1/embeddings"]
    assert all(body["model"] == "fake-embed-1" and len(body["input"]) <= 2 for body in embed_calls)
    assert all(headers["authorization"] == "Bearer sk-test" for _, headers, _ in fake.requests)

    # The KB remembers its embedder: the local model may not query or write it.
    with pytest.raises(EmbedderMismatch, match="built with fake-embed-1"):
        await retrieve(store, embedder, kb, "apples", SearchOptions(top_k=1, alpha=0.5))
    with pytest.raises(EmbedderMismatch):
        await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)


def test_unreachable_endpoint_and_missing_configuration(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="EMBED_PROVIDER=openai needs"):
        create_embedder(settings.model_copy(update={"embed_provider": "openai"}))
    unreachable = OpenAIEmbedder("m", "http://127.0.0.1:9/v1", "k", batch_size=8, timeout=2, max_retries=0)
    with pytest.raises(EmbedError, match="embedding endpoint failed"):
        unreachable.embed_query("hello")
