"""The admin console's page load times over real HTTP with a large answer log.

    python -m bench.console [--answers 100000] [--requests 30]

A local Weaviate with the sample docs (KB `demo`, a registered source), a fake LLM on loopback, an answer log
filled with `--answers` synthetic answers over 30 days (tests/support/answer_log.synthetic: 3 bots, 4 channels;
answers padded to ~700 characters, as real ones are, so text search reads realistic rows) and 20 curated
answers. `switchboard serve` runs in its own process with ADMIN_API_KEY; the bench signs in like a browser and
GETs each page `--requests` times in a row after two warm-up loads, printing p50/p95 per page (the server's
time plus loopback HTTP; the HTML only, as static files are cached by the browser).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import time

import httpx

from bench._common import ms
from bench.widget_load import REPO, demo_setup, server_env
from core.answer.curated import create_curated
from core.answer.curated_data import CuratedInput
from core.config import Settings
from core.embed import create_embedder
from core.ingest.registry import Registry
from core.sqlite import connect
from tests.support.answer_log import fill, synthetic
from tests.support.cli import serve_process

KEY = "bench-admin-key-0123456789abcdef"
DAY = 86400.0
FILLER = "The kit answers from your documents and cites its sources. " * 12  # ~700 characters


def fill_log(settings: Settings, answers: int) -> tuple[str, str]:
    """The answer log with `answers` answers; one conversation of it (channel, key) for the transcript page."""
    path = settings.data_dir / "answers.sqlite3"
    started = time.perf_counter()
    fill(path, synthetic(answers, time.time()))
    with connect(path) as db:
        db.execute("UPDATE answers SET answer = question || ' ' || ?", (FILLER,))
        channel, conversation = db.execute(
            "SELECT channel, conversation FROM answers WHERE bot = 'default' ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    print(f"filled {answers:,} answers in {time.perf_counter() - started:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
    return channel, conversation


async def add_curated(settings: Settings) -> None:
    curated = create_curated(settings, create_embedder(settings))
    for i in range(20):
        entry = CuratedInput(bot="default", questions=(f"Curated question {i}?",), answer=f"Curated answer {i}.")
        await curated.add(entry)


def sign_in(client: httpx.Client) -> None:
    nonce = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin/ui/signin").text)
    assert nonce is not None
    signed = client.post("/admin/ui/signin", data={"key": KEY, "csrf": nonce[1]})
    assert signed.status_code == 303, signed.text


def pages(channel: str, conversation: str) -> list[tuple[str, str]]:
    week_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 7 * DAY))
    return [
        ("Analytics, 7 days, every bot", "/admin/ui/analytics?since=7d"),
        ("Analytics, 30 days, one bot", "/admin/ui/analytics?since=30d&bot=default"),
        ("Analytics, 30 days, every bot", "/admin/ui/analytics?since=30d"),
        ("its knowledge gaps, 7 days (htmx, after the page)", "/admin/ui/analytics/gaps?since=7d"),
        ("its knowledge gaps, 30 days, one bot", "/admin/ui/analytics/gaps?since=30d&bot=default"),
        ("Feedback (latest 200 👎)", "/admin/ui/feedback"),
        ("Conversations, page 1", "/admin/ui/conversations?bot=default"),
        ("Conversations, page 100", "/admin/ui/conversations?bot=default&page=100"),
        ("Conversations, common text", "/admin/ui/conversations?bot=default&q=slack"),
        ("Conversations, text found nowhere", "/admin/ui/conversations?bot=default&q=kubernetes"),
        ("Conversations, text + last 7 days", f"/admin/ui/conversations?bot=default&q=docker&since={week_ago}"),
        ("Transcript", f"/admin/ui/transcript?channel={channel}&conversation={conversation}"),
        ("Curated answers", "/admin/ui/curated"),
        ("Knowledge bases", "/admin/ui/kbs"),
        ("Knowledge base demo (documents, sources, jobs)", "/admin/ui/kbs/demo"),
        ("Bots", "/admin/ui/bots"),
        ("API keys", "/admin/ui/keys"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()

    with demo_setup(0) as (settings, work, fake):
        channel, conversation = fill_log(settings, args.answers)
        asyncio.run(add_curated(settings))
        asyncio.run(
            Registry.for_settings(settings).add(
                kb="demo", target="https://docs.example.com/sitemap.xml", sitemap=True, prune=None, every="1d"
            )
        )
        env = server_env(settings, fake.base_url, ADMIN_API_KEY=KEY)
        results: list[tuple[str, str, float, float]] = []
        with serve_process(env, work) as server, httpx.Client(base_url=server.url, timeout=120) as client:
            sign_in(client)
            for name, path in pages(channel, conversation):
                times = []
                for i in range(args.requests + 2):
                    started = time.perf_counter()
                    response = client.get(path)
                    if i >= 2:
                        times.append(time.perf_counter() - started)
                    assert response.status_code == 200, (path, response.status_code, response.text[:300])
                results.append((name, path, ms(times, 50), ms(times, 95)))
                print(f"  {name}: p50 {ms(times, 50):.0f} ms, p95 {ms(times, 95):.0f} ms", flush=True)
    print(
        f"\nConsole page loads over HTTP, {args.answers:,} answers, {args.requests} requests each; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    )
    width = max(len(name) for name, *_ in results)
    print(f"{'page'.ljust(width)}  {'p50 ms':>7}  {'p95 ms':>7}  under 300 ms p95")
    for name, _, p50, p95 in results:
        print(f"{name.ljust(width)}  {p50:>7.0f}  {p95:>7.0f}  {'yes' if p95 < 300 else 'NO'}")
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "console.json").write_text(
        json.dumps(
            {
                "answers": args.answers,
                "pages": [{"page": n, "path": p, "p50_ms": a, "p95_ms": b} for n, p, a, b in results],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
