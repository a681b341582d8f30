"""Ingest and search benchmark: the kit against the raw components it wraps.

    python -m bench.ingest_search [--queries 60] [--repeat 3]

Builds the Python-docs corpus (bench.corpus), starts a dedicated local Weaviate on free loopback ports, then
runs each phase in its own process so peak RSS is per phase:
  raw     fastembed alone over the very chunks the kit will write (chunks/s), run before and after the ingest
          phase and averaged: this machine's speed drifts by a tenth between minutes, and the phases are sequential
  ingest  `core.ingest.pipeline.ingest` first run, then the unchanged re-run
  search  `core.store.search.retrieve` vs raw query embedding + a raw weaviate-client hybrid query, same parameters;
          retrieve with each passage's relevance, as the answer path asks (what fetching the vectors adds);
          and retrieve with the reranker pointed at a loopback fake /rerank server (what the HTTP step adds)
Prints a table and writes bench/out/ingest_search.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench._common import (
    REPO,
    add_phase_arguments,
    bench_run,
    machine,
    ms,
    peak_rss_mb,
    print_table,
    save,
    settings_for,
)
from bench.corpus import build_corpus
from core.config import Settings
from core.embed import create_embedder
from core.ingest.pipeline import chunks_for, embedding_text, ingest
from core.ingest.sources import discover
from core.kb import EMBED_TEXT, collection_name
from core.store.client import open_store
from core.store.local import LocalWeaviate
from core.store.rerank import open_reranker
from core.store.search import SearchOptions, retrieve
from tests.fakes.rerank_server import FakeReranker

KB = "bench"


async def corpus_chunks(settings: Settings, corpus: Path) -> list[str]:
    found = await discover([str(corpus)], settings)
    return [
        embedding_text(c.title, c.section, c.text, EMBED_TEXT) for doc in found.docs for c in chunks_for(doc, settings)
    ]


def phase_raw(settings: Settings, corpus: Path) -> dict[str, Any]:
    from fastembed import TextEmbedding

    texts = asyncio.run(corpus_chunks(settings, corpus))
    model = TextEmbedding(settings.embed_model, specific_model_path=str(settings.embed_model_path))
    started = time.perf_counter()
    vectors = list(model.embed(texts, batch_size=settings.embed_batch_size))
    seconds = time.perf_counter() - started
    return {"chunks": len(vectors), "seconds": seconds, "rss_mb": peak_rss_mb()}


def phase_ingest(settings: Settings, corpus: Path) -> dict[str, Any]:
    embedder = create_embedder(settings)

    async def run() -> dict[str, Any]:
        async with open_store(settings) as store:
            first = await ingest(store, embedder, [str(corpus)], kb=KB, settings=settings)
            again = await ingest(store, embedder, [str(corpus)], kb=KB, settings=settings)
        assert first.failures == [] and again.added == again.updated == 0
        return {"chunks": first.added, "documents": first.documents, "first": first.seconds, "again": again.seconds}

    return {**asyncio.run(run()), "rss_mb": peak_rss_mb()}


def phase_search(settings: Settings, queries: list[str], repeat: int) -> dict[str, Any]:
    from weaviate.classes.query import HybridFusion, MetadataQuery

    from core.store.nodes import local_client

    embedder = create_embedder(settings)
    local = LocalWeaviate.from_settings(settings)
    options = SearchOptions.from_settings(settings)
    answering = SearchOptions.from_settings(settings, relevance=True)

    async def run() -> dict[str, list[float]]:
        kit: list[float] = []
        raw: list[float] = []
        relevance: list[float] = []
        reranked: list[float] = []
        client = local_client(local)
        await client.connect()
        collection = client.collections.use(collection_name(KB))
        fake = FakeReranker().start()
        async with (
            open_store(settings) as store,
            open_reranker(settings.model_copy(update={"rerank_base_url": fake.base_url})) as reranker,
        ):
            await retrieve(store, embedder, KB, "warm up", options)
            await retrieve(store, embedder, KB, "warm up", options, reranker)
            for _ in range(repeat):
                for query in queries:  # interleaved, so drift on the machine hits both alike
                    t = time.perf_counter()
                    await retrieve(store, embedder, KB, query, options)
                    kit.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    vector = embedder.embed_query(query)
                    await collection.query.hybrid(
                        query=query,
                        vector=vector,
                        alpha=options.alpha,
                        limit=options.top_k,
                        fusion_type=HybridFusion.RELATIVE_SCORE,
                        return_metadata=MetadataQuery(score=True),
                    )
                    raw.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    await retrieve(store, embedder, KB, query, answering)
                    relevance.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    await retrieve(store, embedder, KB, query, options, reranker)
                    reranked.append(time.perf_counter() - t)
        fake.stop()
        await client.close()
        return {"kit": kit, "raw": raw, "relevance": relevance, "reranked": reranked}

    return {**asyncio.run(run()), "rss_mb": peak_rss_mb()}


def load_queries(limit: int) -> list[str]:
    questions = []
    for name in ("pydoc.jsonl", "sample.jsonl"):
        for line in (REPO / "examples" / "qa" / name).read_text().splitlines():
            if line.strip():
                questions.append(json.loads(line)["question"])
    return questions[:limit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    add_phase_arguments(parser)
    args = parser.parse_args()

    if args.phase:
        settings = settings_for(args.work, args.port, args.grpc)
        corpus = args.work / "corpus"
        extra = json.loads(args.extra)
        result = {
            "raw": lambda: phase_raw(settings, corpus),
            "ingest": lambda: phase_ingest(settings, corpus),
            "search": lambda: phase_search(settings, extra["queries"], extra["repeat"]),
        }[args.phase]()
        print(json.dumps(result))
        return

    with bench_run("switchboard-bench-") as run:
        files = build_corpus(run.work / "corpus")
        raw = run.phase("bench.ingest_search", "raw", {})
        ing = run.phase("bench.ingest_search", "ingest", {})
        raw_after = run.phase("bench.ingest_search", "raw", {})
        extra = {"queries": load_queries(args.queries), "repeat": args.repeat}
        srch = run.phase("bench.ingest_search", "search", extra)
        settings = run.settings

    raw_rates = [r["chunks"] / r["seconds"] for r in (raw, raw_after)]
    raw_rate = sum(raw_rates) / 2
    kit_rate = ing["chunks"] / ing["first"]
    kit_p50, kit_p95 = ms(srch["kit"]), ms(srch["kit"], 95)
    raw_p50, raw_p95 = ms(srch["raw"]), ms(srch["raw"], 95)
    rerank_p50, relevance_p50 = ms(srch["reranked"]), ms(srch["relevance"])
    options_note = f"{settings.rerank_top_n} candidates"
    rows = [
        ("corpus", f"{len(files)} files, {ing['documents']} documents, {ing['chunks']} chunks", "", ""),
        (
            "ingest throughput",
            f"{kit_rate:.1f} chunks/s",
            f"raw fastembed {raw_rate:.1f} chunks/s (before/after {raw_rates[0]:.1f}/{raw_rates[1]:.1f})",
            f"{kit_rate / raw_rate:.2f}x (target >= 0.95x, #17)",
        ),
        (
            "re-ingest unchanged",
            f"{ing['again']:.2f} s",
            f"first ingest {ing['first']:.1f} s",
            f"{ing['first'] / ing['again']:.0f}x faster (target >= 20x)",
        ),
        ("search p50", f"{kit_p50:.1f} ms", f"raw {raw_p50:.1f} ms", f"{kit_p50 / raw_p50:.2f}x (target <= 1.2x)"),
        ("search p95", f"{kit_p95:.1f} ms", f"raw {raw_p95:.1f} ms", f"{kit_p95 / raw_p95:.2f}x (target <= 1.2x)"),
        (
            "search + relevance p50",
            f"{relevance_p50:.1f} ms",
            f"kit {kit_p50:.1f} ms",
            f"{relevance_p50 - kit_p50:+.1f} ms (the answer path: vectors for the grounding threshold)",
        ),
        (
            "search + reranker p50",
            f"{rerank_p50:.1f} ms",
            f"kit {kit_p50:.1f} ms",
            f"{rerank_p50 - kit_p50:+.1f} ms ({options_note}; loopback fake: no model time)",
        ),
        (
            "peak RSS",
            f"ingest {ing['rss_mb']:.0f} MB, search {srch['rss_mb']:.0f} MB",
            f"raw embed {raw['rss_mb']:.0f} MB",
            "",
        ),
    ]
    print_table(f"Switchboard ingest/search benchmark — {machine()}, {len(srch['kit'])} queries per side", rows)
    save("ingest_search", {"machine": machine(), "raw": [raw, raw_after], "ingest": ing, "search": srch})


if __name__ == "__main__":
    main()
