"""The optional reranker, end to end through retrieve(): real Weaviate, a loopback server speaking /rerank."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.config import Settings
from core.embed import Embedder
from core.ingest.pipeline import ingest
from core.store.client import Store
from core.store.rerank import open_reranker
from core.store.search import SearchOptions, retrieve
from core.types import Source
from tests.fakes.rerank_server import FakeReranker

# Six documents about kettles that hybrid search ranks above the one the fake reranker favours.
CORPUS = {
    **{
        f"kettle-{n}.md": f"# Kettle care {n}\n\nDescale the kettle with vinegar, then rinse the kettle {n} times."
        for n in range(6)
    },
    "note.md": "# Note\n\nCitrus juice works too (rerank-me).",
    "bread.md": "# Bread\n\nSourdough rises slowly because wild yeast ferments the dough overnight.",
}
QUERY = "how do I descale a kettle"


@pytest.fixture(scope="module")
def fake_reranker() -> Iterator[FakeReranker]:
    server = FakeReranker().start()
    yield server
    server.stop()


@pytest.fixture
def reranker(fake_reranker: FakeReranker) -> FakeReranker:
    fake_reranker.mode, fake_reranker.delay = "ok", 0.0
    fake_reranker.requests.clear()
    return fake_reranker


@pytest.fixture
async def corpus(tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str) -> None:
    for name, text in CORPUS.items():
        (tmp_path / name).write_text(text)
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)


def rerank_settings(settings: Settings, base_url: str, **extra: object) -> Settings:
    update = {"rerank_base_url": base_url, "rerank_model": "fake-rerank", "rerank_top_n": 10, **extra}
    return settings.model_copy(update=update)


def names(found: list[Source]) -> list[str]:
    return [s.source.rsplit("/", 1)[-1] for s in found]


async def test_reranker_reorders_the_candidates(
    corpus: None, store: Store, embedder: Embedder, settings: Settings, kb: str, reranker: FakeReranker
) -> None:
    options = SearchOptions(top_k=3, alpha=0.5)
    hybrid = await retrieve(store, embedder, kb, QUERY, options)
    assert "note.md" not in names(hybrid)  # without the reranker it does not make the top 3

    configured = rerank_settings(settings, reranker.base_url, rerank_api_key=SecretStr("rk-secret"))
    async with open_reranker(configured) as opened:
        found = await retrieve(store, embedder, kb, QUERY, options, opened)
    assert names(found)[0] == "note.md" and found[0].score == 1.0
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)
    assert len({s.doc_id for s in found}) == 3  # the document cap applies after reranking

    [(path, headers, body)] = reranker.requests
    assert path == "/v1/rerank" and headers["authorization"] == "Bearer rk-secret"
    assert body["model"] == "fake-rerank" and body["query"] == QUERY
    # RERANK_TOP_N candidates (this corpus has only 8 chunks), each a passage's text.
    assert len(body["documents"]) == body["top_n"] == len(CORPUS)
    assert any("rerank-me" in d for d in body["documents"])


@pytest.mark.parametrize("mode", ["error", "garbage", "bad-index", "slow", "unreachable"])
async def test_a_failing_reranker_keeps_the_hybrid_order(
    corpus: None,
    store: Store,
    embedder: Embedder,
    settings: Settings,
    kb: str,
    reranker: FakeReranker,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = SearchOptions(top_k=3, alpha=0.5)
    hybrid = await retrieve(store, embedder, kb, QUERY, options)
    base_url = reranker.base_url
    if mode == "unreachable":
        with socket.socket() as s:  # a port nothing listens on once closed
            s.bind(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    reranker.mode, reranker.delay = mode, 2.0
    caplog.set_level(logging.WARNING, logger="core.store.search")
    async with open_reranker(rerank_settings(settings, base_url, rerank_timeout=0.3)) as opened:
        found = await retrieve(store, embedder, kb, QUERY, options, opened)
    assert found == hybrid
    [record] = [r for r in caplog.records if r.name == "core.store.search"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("reranking skipped, hybrid order kept: reranker")


async def test_off_unless_configured(settings: Settings) -> None:
    assert settings.rerank_base_url is None
    async with open_reranker(settings) as opened:
        assert opened is None
