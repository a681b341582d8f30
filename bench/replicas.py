"""Replica benchmark: two `switchboard serve` replicas sharing Redis against one replica on SQLite, under the
same concurrent streaming load.

    python -m bench.replicas [--conversations 60] [--turns 2]

A local Weaviate with the sample docs, a fast scripted fake LLM and a real redis-server, all on loopback. Each
conversation mints a widget session token and then streams `--turns` answers one after another; with two
replicas the token is minted on one and the turns alternate between them, as a load balancer without sticky
sessions would send them, so every follow-up reads its history (and every request its session secret and rate
limits) from Redis. Measures answers per second over the whole run, time to first event p50/p95 and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from contextlib import ExitStack
from pathlib import Path

from bench._common import ms, print_table, save
from bench.widget_load import demo_setup, over_http, server_env
from tests.support.cli import serve_process
from tests.support.redis_server import redis_server


def run(env: dict[str, str], work: Path, replicas: int, n: int, turns: int) -> dict[str, float]:
    with ExitStack() as stack:
        urls = [stack.enter_context(serve_process(env, work)).url for _ in range(replicas)]
        started = time.perf_counter()
        first, _, errors = asyncio.run(over_http(urls, n, None, turns))
        wall = time.perf_counter() - started
    return {
        "answers_per_s": len(first) / wall,
        "first_p50": ms(first, 50),
        "first_p95": ms(first, 95),
        "errors": errors,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=60)
    parser.add_argument("--turns", type=int, default=2)
    args = parser.parse_args()
    n, turns = args.conversations, args.turns
    # Answers, plus the question rewrites of follow-ups, for both setups with room to spare.
    with demo_setup(6 * n * turns) as (settings, work, fake):
        env = server_env(settings, fake.base_url)
        single = run(env, work, 1, n, turns)
        (work / "redis").mkdir()
        with redis_server(work / "redis") as redis_url:
            shared = run(env | {"REDIS_URL": redis_url}, work, 2, n, turns)

    rows = [
        ("setup", "answers/s", "first event p50", "first event p95", "errors"),
        *(
            (
                name,
                f"{r['answers_per_s']:.1f}",
                f"{r['first_p50']:.0f} ms",
                f"{r['first_p95']:.0f} ms",
                f"{r['errors']:.0f} of {n * turns}",
            )
            for name, r in (("1 replica + SQLite", single), ("2 replicas + Redis", shared))
        ),
    ]
    title = (
        f"Switchboard replicas: {platform.machine()}, {os.cpu_count()} cores, {n} concurrent conversations × "
        f"{turns} turns over the widget SSE API, fast fake LLM"
    )
    print_table(title, rows)
    save("replicas", {"single": single, "replicas": shared, "n": n, "turns": turns})


if __name__ == "__main__":
    main()
