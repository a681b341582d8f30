"""The kit's own Prometheus metrics, observed where the work happens; the web server exposes them at /metrics.

Counters and histograms live in prometheus_client's default registry, one per process. `switchboard serve`
runs one process per replica (no uvicorn workers), so each replica is its own scrape target; a process that
does not serve HTTP (a chat bot on its own, `switchboard sync`) counts too but exposes nothing.
Labels stay low-cardinality: channel and outcome, never a bot-defined or user-supplied value.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from prometheus_client import Counter, Histogram

P = ParamSpec("P")
T = TypeVar("T")

ANSWERS = Counter("switchboard_answers", "Answers given, by channel and outcome.", ["channel", "outcome"])
ANSWER_FIRST_TEXT = Histogram(
    "switchboard_answer_first_text_seconds",
    "From the question to the first text of the answer.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
RETRIEVAL = Histogram(
    "switchboard_retrieval_seconds",
    "Retrieval (hybrid search, and the reranker if any) per question.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LLM_SECONDS = Histogram(
    "switchboard_llm_seconds",
    "The model's whole answer (streamed), per question the model was asked.",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)
INGESTS = Counter("switchboard_ingests", "Ingestion runs (CLI, admin API, sync), by result.", ["result"])
INGEST_CHUNKS = Counter("switchboard_ingest_chunks_written", "Chunks embedded and stored by ingestion.")
SYNCS = Counter("switchboard_source_syncs", "Registered sources synced, by result.", ["result"])


def counted(counter: Counter) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Count an async function's runs in `counter` by result: ok, or failed (it raised)."""

    def decorate(run: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(run)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                result = await run(*args, **kwargs)
            except BaseException:
                counter.labels("failed").inc()
                raise
            counter.labels("ok").inc()
            return result

        return wrapper

    return decorate
