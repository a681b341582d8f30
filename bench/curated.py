"""Curated answers benchmark: importing many (embedding every phrasing) and matching a question against them.

    python -m bench.curated [--answers 1000] [--questions 200]

--answers curated answers of 3 phrasings each are imported (as `switchboard answers import` does) with the real
embedder (MiniLM int8), then --questions questions are matched one after another: half are phrasings imported
(a hit), half questions about nothing curated (a miss). The same matching with a hashing embedder measures the
matching itself (nearest phrasing + hit count), without the query's embedding. Prints a table and writes
bench/out/curated.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine, ms, peak_rss_mb, print_table, save
from bench.crawl import HashEmbedder
from core.answer.curated import CuratedAnswers
from core.answer.curated_data import CuratedInput
from core.config import Settings
from core.embed import Embedder, create_embedder, offline_minilm_dir

BOT = "bench"
TOPICS = "backup restore deploy rollback queue worker cache proxy token shard replica index cluster node".split()  # noqa: SIM905


def entries(count: int) -> list[CuratedInput]:
    out = []
    for i in range(count):
        a, b = TOPICS[i % len(TOPICS)], TOPICS[(i // len(TOPICS)) % len(TOPICS)]
        questions = (
            f"How do I {a} the {b} number {i}?",
            f"What are the steps to {a} {b} {i}?",
            f"{a} {b} {i}: how?",
        )
        out.append(CuratedInput(bot=BOT, questions=questions, answer=f"To {a} {b} {i}, run `kestrel {a} {b} {i}`."))
    return out


async def run(embedder: Embedder, path: Path, answers: int, questions: int) -> dict[str, Any]:
    curated = CuratedAnswers(path, embedder, Settings(_env_file=None).curated_min_similarity)
    embedder.embed_documents(["warm up"])  # the model loads before the clock starts
    started = time.perf_counter()
    await curated.import_many(entries(answers))
    imported = time.perf_counter() - started
    asked = [
        (f"How do I {TOPICS[i % len(TOPICS)]} the {TOPICS[(i // len(TOPICS)) % len(TOPICS)]} number {i}?", True)
        for i in range(0, answers, max(1, 2 * answers // questions))
    ][: questions // 2]
    asked += [(f"Which colour is the office cat number {i}?", False) for i in range(questions - len(asked))]
    seconds, right = [], 0
    for question, curated_one in asked:
        started = time.perf_counter()
        found = await curated.match(BOT, question)
        seconds.append(time.perf_counter() - started)
        right += (found is not None) == curated_one
    return {
        "import_seconds": imported,
        "phrasings": 3 * answers,
        "p50_ms": ms(seconds, 50),
        "p95_ms": ms(seconds, 95),
        "right": right,
        "asked": len(asked),
        "rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchboard-curated-bench-") as tmp:
        work = Path(tmp)
        settings = Settings(_env_file=None, data_dir=work, embed_model_path=offline_minilm_dir(work / "models"))
        real = asyncio.run(run(create_embedder(settings), work / "real.sqlite3", args.answers, args.questions))
        hashed = asyncio.run(run(HashEmbedder(), work / "hash.sqlite3", args.answers, args.questions))
    rows = [
        ("embedder", "import", "match p50", "match p95", "matched right", ""),
        (
            "real (MiniLM int8)",
            f"{real['import_seconds']:.1f} s for {real['phrasings']} phrasings "
            f"({real['phrasings'] / real['import_seconds']:.0f}/s)",
            f"{real['p50_ms']:.0f} ms",
            f"{real['p95_ms']:.0f} ms",
            f"{real['right']} of {real['asked']}",
            "hit: an imported phrasing; miss: unrelated",
        ),
        (
            "hashing (matching alone)",
            f"{hashed['import_seconds']:.1f} s",
            f"{hashed['p50_ms']:.1f} ms",
            f"{hashed['p95_ms']:.1f} ms",
            "",
            "nearest phrasing + hit count write",
        ),
    ]
    print_table(f"Switchboard curated answers benchmark ({args.answers} answers) — {machine()}", rows)
    save("curated", {"machine": machine(), "real": real, "hashed": hashed})


if __name__ == "__main__":
    main()
