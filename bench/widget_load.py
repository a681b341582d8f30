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
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.ingest_search import REPO, settings_for
from core.apikeys import ApiKeys
from core.config import Settings
from core.embed import create_embedder
from core.ingest import ingest
from core.rag import open_assistant
from core.store import open_store
from core.types import Message
from core.weaviate_local import LocalWeaviate
from tests.conftest import free_port_block
from tests.fakes.openai_server import FakeOpenAI, Reply

QUESTION = "Which port does the Kestrel dashboard listen on?"
ANSWER = [f"token{i} " for i in range(20)] + ["[1]."]


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def direct(n: int, settings: Settings) -> list[float]:
    async with open_assistant(settings) as assistant:

        async def one(i: int) -> float:
            started = time.perf_counter()
            async for _ in assistant.answer(Message(text=QUESTION, channel="bench", conversation_id=f"d{i}")):
                return time.perf_counter() - started
            return float("nan")

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def over_http(url: str, n: int, api_key: str | None) -> tuple[list[float], list[float], int]:
    """Widget SSE (a session token per conversation), or the OpenAI-compatible API when api_key is given."""
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def request(i: int) -> tuple[str, dict[str, object], dict[str, str]]:
            if api_key is not None:
                body = {"model": "default", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
                return "/v1/chat/completions", body, {"Authorization": f"Bearer {api_key}"}
            minted = await client.post("/api/session", json={"bot": "default"}, headers={"Origin": url})
            body = {"message": QUESTION, "conversation_id": f"load-conversation-{i}"}
            return "/api/chat", body, {"Authorization": f"Bearer {minted.json()['token']}", "Origin": url}

        async def one(i: int) -> tuple[float, float] | None:
            try:
                path, body, headers = await request(i)
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
            except httpx.HTTPError:
                return None

        results = await asyncio.gather(*(one(i) for i in range(n)))
    ok = [r for r in results if r is not None]
    return [r[0] for r in ok], [r[1] for r in ok], n - len(ok)


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--surface", choices=["widget", "api"], default="widget")
    args = parser.parse_args()
    n = args.conversations
    fake = FakeOpenAI().start()
    fake.enqueue(*[Reply(chunks=ANSWER) for _ in range(4 * n)])
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        work = Path(tmp)
        port, grpc = free_port_block()
        server_port, _ = free_port_block()
        settings = settings_for(work, port, grpc).model_copy(
            update={"default_kb": "demo", "llm_base_url": fake.base_url, "llm_model": "fake-chat"}
        )
        local = LocalWeaviate.from_settings(settings)
        local.start()
        env = {
            **os.environ,
            "SWITCHBOARD_DATA_DIR": str(settings.data_dir),
            "WEAVIATE_LOCAL_PORT": str(port),
            "WEAVIATE_LOCAL_GRPC_PORT": str(grpc),
            "EMBED_MODEL_PATH": str(settings.embed_model_path),
            "SWITCHBOARD_KB": "demo",
            "LLM_BASE_URL": fake.base_url,
            "LLM_API_KEY": "sk-bench",
            "LLM_MODEL": "fake-chat",
            "RATE_LIMIT_IP": "100000/minute",
            "RATE_LIMIT_SESSION": "100000/minute",
            "RATE_LIMIT_API_KEY": "100000/minute",
            "SERVER_PORT": str(server_port),
        }
        server = None
        try:
            asyncio.run(_ingest(settings))
            direct_first = asyncio.run(direct(n, settings))
            server = subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "switchboard"), "serve"],
                env=env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"http://127.0.0.1:{server_port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("the server did not start")
                time.sleep(0.2)
            key = None
            if args.surface == "api":
                key, _ = ApiKeys(settings.data_dir / "api-keys.sqlite3").create(name="bench", bots=())
            first, total, errors = asyncio.run(over_http(url, n, key))
            rss = vm_hwm_mb(server.pid)
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
            local.stop()
            fake.stop()

    rows = [
        ("conversations / errors", f"{n} concurrent", f"{errors} errors", ""),
        (
            "time to first event p50",
            f"server {pct(first, 50):.0f} ms",
            f"direct answer() {pct(direct_first, 50):.0f} ms",
            f"added {pct(first, 50) - pct(direct_first, 50):+.0f} ms",
        ),
        (
            "time to first event p95",
            f"server {pct(first, 95):.0f} ms",
            f"direct answer() {pct(direct_first, 95):.0f} ms",
            f"added {pct(first, 95) - pct(direct_first, 95):+.0f} ms",
        ),
        ("total per answer p50 / p95", f"{pct(total, 50):.0f} / {pct(total, 95):.0f} ms", "", ""),
        ("server peak RSS", f"{rss:.0f} MB", "", ""),
    ]
    surface = "OpenAI-compatible API" if args.surface == "api" else "widget SSE API"
    print(f"Switchboard {surface} load: {platform.machine()}, {os.cpu_count()} cores, fast fake LLM (21 chunks)")
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)))
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / f"{args.surface}_load.json").write_text(
        json.dumps({"first": first, "total": total, "direct_first": direct_first, "errors": errors, "rss_mb": rss})
    )


async def _ingest(settings: Settings) -> None:
    async with open_store(settings) as store:
        await ingest(store, create_embedder(settings), [str(REPO / "examples" / "docs")], kb="demo", settings=settings)


if __name__ == "__main__":
    main()
