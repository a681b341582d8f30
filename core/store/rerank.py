"""Optional reranking of hybrid candidates by a server speaking the common `/rerank` API.

Cohere, Jina, Infinity and vLLM accept POST {model, query, documents, top_n} at `<base>/rerank` and answer
{results: [{index, relevance_score}, …]} best first. No registry package ships a cross-encoder's weights for
offline use, so the kit has no local reranker: it is off unless RERANK_BASE_URL is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import httpx

from core.config import Settings
from core.errors import RerankError


class Reranker(Protocol):
    @property
    def candidates(self) -> int:
        """How many hybrid candidates to hand it."""
        ...

    async def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        """(index into `documents`, relevance score), best first; raises RerankError."""
        ...


class HttpReranker:
    def __init__(self, client: httpx.AsyncClient, *, model: str | None, candidates: int):
        self._client = client
        self._model = model
        self._candidates = candidates

    @property
    def candidates(self) -> int:
        return self._candidates

    async def rerank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        body: dict[str, Any] = {"query": query, "documents": list(documents), "top_n": len(documents)}
        if self._model:
            body["model"] = self._model
        try:
            response = await self._client.post("rerank", json=body)
            response.raise_for_status()
            ranked = [(int(r["index"]), float(r["relevance_score"])) for r in response.json()["results"]]
        except httpx.HTTPStatusError as exc:
            raise RerankError(f"reranker answered HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise RerankError(f"reranker unreachable ({type(exc).__name__}: {exc})") from None
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the /rerank shape
            raise RerankError(f"reranker reply is not a /rerank result ({type(exc).__name__}: {exc})") from None
        indices = [i for i, _ in ranked]
        if len(set(indices)) != len(indices) or not all(0 <= i < len(documents) for i in indices):
            raise RerankError("reranker reply has indices out of range or repeated")
        return ranked


@asynccontextmanager
async def open_reranker(settings: Settings) -> AsyncIterator[Reranker | None]:
    """The configured reranker for this process (None: off), its connection pool closed on exit."""
    if not settings.rerank_base_url:
        yield None
        return
    key = settings.rerank_api_key
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    base = settings.rerank_base_url.rstrip("/") + "/"
    timeout = httpx.Timeout(settings.rerank_timeout, connect=min(settings.rerank_timeout, 3.0))
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as client:
        yield HttpReranker(client, model=settings.rerank_model, candidates=settings.rerank_top_n)
