"""Web server load benchmark: N concurrent streaming conversations against one `switchboard serve` process,
through the widget's SSE API or the OpenAI-compatible API.

    python -m bench.widget_load [--conversations 200] [--surface widget|api]

A local Weaviate with the sample docs and a fast scripted fake LLM on loopback. Each conversation mints a
session token and streams one answer over SSE. Measures errors, time to first event and total time (p50/p95),
the server's added latency over calling `Assistant.answer` directly in-process with the same concurrency, and
the server's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench._common import REPO, ms, print_table, save, settings_for
from bench.answer import vm_hwm_mb
from core.answer.assistant import open_assistant
from core.config import Settings
from core.embed import create_embedder
from core.ingest.pipeline import ingest
from core.store.client import open_store
from core.store.local import LocalWeaviate
from core.types import Message
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support.cli import cli_environment, serve_process
from tests.support.ports import free_port_block
from widget.apikeys import ApiKeys

QUESTION = "Which port does the Kestrel dashboard listen on?"
ANSWER = [f"token{i} " for i in range(20)] + ["[1]."]


async def direct(n: int, settings: Settings) -> list[float]:
    async with open_assistant(settings) as assistant:

        async def one(i: int) -> float:
            started = time.perf_counter()
            async for _ in assistant.answer(Message(text=QUESTION, channel="bench", conversation_id=f"d{i}")):
                return time.perf_counter() - started
            return float("nan")

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def over_http(
    urls: list[str], n: int, api_key: str | None, turns: int = 1
) -> tuple[list[float], list[float], int]:
    """Widget SSE (a session token per conversation), or the OpenAI-compatible API when api_key is given.

    With several server URLs (replicas) the requests of one conversation rotate over them like a load balancer
    without sticky sessions would send them: the token minted on one replica, each turn on the next.
    """
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def request(i: int, turn: int) -> tuple[str, dict[str, object], dict[str, str]]:
            url = urls[(i + turn + 1) % len(urls)]
            if api_key is not None:
                body = {"model": "default", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
                return f"{url}/v1/chat/completions", body, {"Authorization": f"Bearer {api_key}"}
            if turn == 0:
                minted = await client.post(
                    f"{urls[i % len(urls)]}/api/session", json={"bot": "default"}, headers={"Origin": urls[0]}
                )
                tokens[i] = minted.json()["token"]
            body = {"message": QUESTION, "conversation_id": f"load-conversation-{i}"}
            return f"{url}/api/chat", body, {"Authorization": f"Bearer {tokens[i]}", "Origin": urls[0]}

        async def one(i: int, turn: int) -> tuple[float, float] | None:
            try:
                path, body, headers = await request(i, turn)
                started = time.perf_counter()
                first = 0.0
                async with client.stream("POST", path, json=body, headers=headers) as response:
                    if response.status_code != 200:
                        return None
                    text = ""
                    async for chunk in response.aiter_text():
                        first = first or time.perf_counter() - started
                        text += chunk
                if "event: done" not in text and "[DONE]" not in text:
                    return None
                return first, time.perf_counter() - started
            except (httpx.HTTPError, KeyError, ValueError):
                return None

        async def conversation(i: int) -> list[tuple[float, float] | None]:
            return [await one(i, turn) for turn in range(turns)]

        tokens: dict[int, str] = {}
        results = [r for c in await asyncio.gather(*(conversation(i) for i in range(n))) for r in c]
    ok = [r for r in results if r is not None]
    return [r[0] for r in ok], [r[1] for r in ok], len(results) - len(ok)


def server_env(settings: Settings, llm_url: str, **extra: str) -> dict[str, str]:
    """`switchboard serve` over the bench's Weaviate and fake LLM, with rate limits out of the way."""
    return cli_environment(
        settings,
        SWITCHBOARD_KB="demo",
        LLM_BASE_URL=llm_url,
        LLM_API_KEY="sk-bench",
        LLM_MODEL="fake-chat",
        RATE_LIMIT_IP="100000/minute",
        RATE_LIMIT_SESSION="100000/minute",
        RATE_LIMIT_API_KEY="100000/minute",
        **extra,
    )


@contextmanager
def demo_setup(answers: int) -> Iterator[tuple[Settings, Path, FakeOpenAI]]:
    """A temporary data directory with a local Weaviate holding the sample docs as KB `demo`, and a fast fake
    LLM scripted with `answers` replies."""
    fake = FakeOpenAI().start()
    fake.enqueue(*[Reply(chunks=ANSWER) for _ in range(answers)])
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        work = Path(tmp)
        port, grpc = free_port_block()
        settings = settings_for(work, port, grpc).model_copy(
            update={"default_kb": "demo", "llm_base_url": fake.base_url, "llm_model": "fake-chat"}
        )
        local = LocalWeaviate.from_settings(settings)
        local.start()
        try:
            asyncio.run(ingest_demo(settings))
            yield settings, work, fake
        finally:
            local.stop()
            fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--surface", choices=["widget", "api"], default="widget")
    args = parser.parse_args()
    n = args.conversations
    with demo_setup(4 * n) as (settings, work, fake):
        direct_first = asyncio.run(direct(n, settings))
        with serve_process(server_env(settings, fake.base_url), work) as server:
            key = None
            if args.surface == "api":
                key, _ = ApiKeys(settings.data_dir / "api-keys.sqlite3").create(name="bench", bots=())
            first, total, errors = asyncio.run(over_http([server.url], n, key))
            rss = vm_hwm_mb(server.pid)

    rows = [
        ("conversations / errors", f"{n} concurrent", f"{errors} errors", ""),
        (
            "time to first event p50",
            f"server {ms(first, 50):.0f} ms",
            f"direct answer() {ms(direct_first, 50):.0f} ms",
            f"added {ms(first, 50) - ms(direct_first, 50):+.0f} ms",
        ),
        (
            "time to first event p95",
            f"server {ms(first, 95):.0f} ms",
            f"direct answer() {ms(direct_first, 95):.0f} ms",
            f"added {ms(first, 95) - ms(direct_first, 95):+.0f} ms",
        ),
        ("total per answer p50 / p95", f"{ms(total, 50):.0f} / {ms(total, 95):.0f} ms", "", ""),
        ("server peak RSS", f"{rss:.0f} MB", "", ""),
    ]
    surface = "OpenAI-compatible API" if args.surface == "api" else "widget SSE API"
    title = f"Switchboard {surface} load: {platform.machine()}, {os.cpu_count()} cores, fast fake LLM (21 chunks)"
    print_table(title, rows)
    result = {"first": first, "total": total, "direct_first": direct_first, "errors": errors, "rss_mb": rss}
    save(f"{args.surface}_load", result)


async def ingest_demo(settings: Settings) -> None:
    async with open_store(settings) as store:
        await ingest(store, create_embedder(settings), [str(REPO / "examples" / "docs")], kb="demo", settings=settings)


if __name__ == "__main__":
    main()
