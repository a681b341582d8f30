"""Retrieval on third-party QA sets: the kit's pipeline against a naive one, same embedder, same Weaviate.

    python -m bench.retrieval [--sets DIR] [--set NAME ...] [--variants NAME,NAME,...] [--cache FILE] [--out FILE]
    python -m bench.retrieval --combine OUT [OUT ...]   # the report of runs made set by set

Reads the sets `python -m bench.qa_sets build` wrote (DIR/<set>/docs + qa.jsonl), starts one local Weaviate on
free loopback ports, and per set:
  kit    `core.ingest.pipeline.ingest` into a KB with the current defaults, questions through
         `core.store.search.retrieve` with the configured SEARCH_* options, as `switchboard eval` does;
         beside it the variants in KIT_VARIANTS (a default switched back, other chunking: its own KB)
  naive  each file's text split by LangChain's RecursiveCharacterTextSplitter (1000/200), the same embedder over
         the plain chunk text, one raw Weaviate collection, hybrid (relative-score fusion) at alpha 0.5 and 0.75
Documents are ranked by their best chunk; the gold is the FAQ entry's document. Prints recall@5, MRR@10,
nDCG@10, psg@5 (the gold document among the K passages handed to the model) and p50 query latency (query
embedding + search) per set and their mean over the sets, and writes every question's ranks to
bench/out/retrieval.json for looking at the misses. Chunk embeddings are cached on disk by text hash
(bench.embed_cache), so a variant that embeds the same texts costs only Weaviate inserts and queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import weaviate
from langchain_text_splitters import RecursiveCharacterTextSplitter
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.query import HybridFusion
from weaviate.collections import CollectionAsync

from bench._common import bench_run, machine
from bench.embed_cache import CachedEmbedder
from bench.qa_sets import DEFAULT_OUT
from core.config import Settings
from core.embed import Embedder, create_embedder
from core.evaluate import MRR_DEPTH, QA, QuestionResult, load_qa, matches, ranking_options, score
from core.ingest.pipeline import ingest
from core.kb import EMBED_TEXT, LEGACY_EMBED_TEXT, MARKDOWN_EMBED_TEXT, EmbedText, KBMeta
from core.store.client import Store, open_store
from core.store.local import LocalWeaviate
from core.store.nodes import local_client
from core.store.search import SearchOptions, retrieve

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".switchboard" / "bench-cache" / "embeddings.sqlite"
NAIVE = "naive"  # the variant name that runs the naive pipeline (at every alpha in NAIVE_ALPHAS)
K = 5
FETCH = max(K, MRR_DEPTH) * 4  # naive chunks per query, as core.evaluate fetches them with no cap
NAIVE_SIZE, NAIVE_OVERLAP = 1000, 200
NAIVE_ALPHAS = (0.5, 0.75)
Search = Callable[[str], Awaitable[list[str]]]  # question -> sources of the ranked chunks
ALL_FIELDS = ("text", "title", "section")
# name -> (settings changed for ingest, search options changed): each default's contribution, measured by
# switching it back, and the candidates that did not become defaults. A chunking change gets its own KB.
KIT_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "kit": ({}, {}),
    "kit penalty=0": ({}, {"doc_length_penalty": 0.0}),
    "kit penalty=.05": ({}, {"doc_length_penalty": 0.05}),
    "kit penalty=.15": ({}, {"doc_length_penalty": 0.15}),
    "kit markdown": ({"embed_text": MARKDOWN_EMBED_TEXT}, {}),  # vectors of the Markdown as written, as before
    "kit α=.7": ({}, {"alpha": 0.7}),
    "kit α=.7 penalty=.15": ({}, {"alpha": 0.7, "doc_length_penalty": 0.15}),
    "kit title": ({"embed_text": LEGACY_EMBED_TEXT}, {}),  # vectors of title + section + text, as before #17
    "kit title penalty=0": ({"embed_text": LEGACY_EMBED_TEXT}, {"doc_length_penalty": 0.0}),  # the last defaults
    "kit cap=0": ({}, {"doc_cap": 0}),
    "kit bm25=all": ({}, {"keyword_fields": ALL_FIELDS}),
    "kit before": (  # the defaults before #17's changes
        {"embed_text": LEGACY_EMBED_TEXT},
        {"doc_cap": 0, "keyword_fields": ALL_FIELDS, "doc_length_penalty": 0.0, "keyword_question_words": True},
    ),
    "kit bm25=text+title": ({}, {"keyword_fields": ("text", "title")}),
    "kit α=.6": ({}, {"alpha": 0.6}),
    "kit α=.85": ({}, {"alpha": 0.85}),
    "kit ranked": ({}, {"fusion": "ranked"}),
    "kit damp=.1": ({}, {"doc_damping": 0.1}),
    "kit damp=.3": ({}, {"doc_damping": 0.3}),
    "kit question words": ({}, {"keyword_question_words": True}),  # BM25 also matches "how do I", as before
    "kit damp=-.05": ({}, {"doc_damping": -0.05}),
    "kit damp=-.1": ({}, {"doc_damping": -0.1}),
    "kit damp=-.2": ({}, {"doc_damping": -0.2}),
    "kit damp=-.3": ({}, {"doc_damping": -0.3}),
    "kit damp=-.1 α=.6": ({}, {"doc_damping": -0.1, "alpha": 0.6}),
    "kit damp=-.2 α=.6": ({}, {"doc_damping": -0.2, "alpha": 0.6}),
    "kit merge<500 damp=-.1": ({"chunk_merge_below": 500}, {"doc_damping": -0.1}),
    "kit merge<500": ({"chunk_merge_below": 500}, {}),
    "kit 1000/200": ({"chunk_size": 1000, "chunk_overlap": 200}, {}),
    "kit 800/150": ({"chunk_size": 800, "chunk_overlap": 150}, {}),
    "kit 1200/150": ({"chunk_size": 1200, "chunk_overlap": 150}, {}),
    "kit 1500/150": ({"chunk_size": 1500, "chunk_overlap": 150}, {}),
}


@dataclass(frozen=True, kw_only=True)
class SideResult:
    name: str
    chunks: int
    ingest_seconds: float
    questions: list[QuestionResult]
    served: list[bool]  # the gold document among the first K passages
    latencies: list[float]

    def row(self) -> dict[str, float]:
        n = len(self.questions)
        return {
            "recall@5": sum(q.recall for q in self.questions) / n,
            "MRR@10": sum(q.reciprocal_rank for q in self.questions) / n,
            "nDCG@10": sum(ndcg(q) for q in self.questions) / n,
            "psg@5": sum(self.served) / n,
            "p50 ms": statistics.median(self.latencies) * 1000,
        }


def ndcg(result: QuestionResult) -> float:
    """Binary-relevance nDCG@10 over distinct documents."""
    gains = [1.0 if any(matches(s, e) for e in result.expected) else 0.0 for s in result.retrieved[:MRR_DEPTH]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(result.expected), MRR_DEPTH)))
    return dcg / ideal


# --- the naive pipeline ------------------------------------------------------------------------------------


async def naive_collection(client: weaviate.WeaviateAsyncClient, name: str) -> CollectionAsync[Any, Any]:
    await client.collections.delete(name)
    return await client.collections.create(
        name,
        properties=[
            Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
            Property(name="source", data_type=DataType.TEXT, tokenization=Tokenization.FIELD, index_searchable=False),
        ],
        vector_config=Configure.Vectors.self_provided(
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
        ),
    )


async def naive_ingest(collection: CollectionAsync[Any, Any], embedder: Embedder, docs: Path) -> int:
    splitter = RecursiveCharacterTextSplitter(chunk_size=NAIVE_SIZE, chunk_overlap=NAIVE_OVERLAP)
    chunks = [
        (str(path.relative_to(docs)), piece)
        for path in sorted(docs.rglob("*.md"))
        for piece in splitter.split_text(path.read_text(encoding="utf-8"))
    ]
    for start in range(0, len(chunks), 256):
        group = chunks[start : start + 256]
        vectors = await asyncio.to_thread(embedder.embed_documents, [text for _, text in group])
        objects = [
            DataObject(properties={"text": text, "source": source}, vector=vector)
            for (source, text), vector in zip(group, vectors, strict=True)
        ]
        result = await collection.data.insert_many(objects)
        if result.has_errors:
            raise RuntimeError(f"naive insert failed: {next(iter(result.errors.values())).message}")
    return len(chunks)


def naive_search(collection: CollectionAsync[Any, Any], embedder: Embedder, alpha: float) -> Search:
    async def search(question: str) -> list[str]:
        vector = await asyncio.to_thread(embedder.embed_query, question)
        result = await collection.query.hybrid(
            query=question,
            vector=vector,
            alpha=alpha,
            limit=FETCH,
            fusion_type=HybridFusion.RELATIVE_SCORE,
            return_properties=["source"],
        )
        return [str(o.properties["source"]) for o in result.objects]

    return search


def kb_meta(embedder: Embedder, settings: Settings, embed_text: EmbedText) -> KBMeta:
    return KBMeta(
        embed_model=embedder.name,
        embed_dim=embedder.dim,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        embed_text=embed_text,
    )


def kit_search(store: Store, embedder: Embedder, kb: str, options: SearchOptions) -> Search:
    options = ranking_options(options, K)

    async def search(question: str) -> list[str]:
        return [s.source for s in await retrieve(store, embedder, kb, question, options)]

    return search


# --- one set -----------------------------------------------------------------------------------------------


async def run_set(
    set_dir: Path,
    settings: Settings,
    embedder: Embedder,
    store: Store,
    client: weaviate.WeaviateAsyncClient,
    variants: list[str],
) -> dict[str, Any]:
    name = set_dir.name
    qa = load_qa(set_dir / "qa.jsonl")
    docs = set_dir / "docs"
    searches: dict[str, Search] = {}
    chunks: dict[str, int] = {}
    seconds: dict[str, float] = {}
    kbs: dict[str, tuple[str, int, float]] = {}  # chunking -> KB, chunks, ingest seconds
    documents = 0
    for side in (v for v in variants if v in KIT_VARIANTS):
        ingest_changes, search_changes = KIT_VARIANTS[side]
        embed_text = ingest_changes.get("embed_text", EMBED_TEXT)  # a KB's own (KBMeta), not a setting
        side_settings = settings.model_copy(update={k: v for k, v in ingest_changes.items() if k != "embed_text"})
        chunking = (
            f"{side_settings.chunk_size}/{side_settings.chunk_overlap}/{side_settings.chunk_merge_below}/{embed_text}"
        )
        if chunking not in kbs:
            log(f"{name}: kit ingest, chunks {chunking}")
            kb = f"bench_{name}_{len(kbs)}"
            if embed_text != EMBED_TEXT:  # created ahead with that way of embedding; ingest then keeps it
                await store.ensure_kb(kb, kb_meta(embedder, side_settings, embed_text))
            started = time.perf_counter()
            report = await ingest(store, embedder, [str(docs)], kb=kb, settings=side_settings)
            if report.failures:
                raise RuntimeError(f"{name}: kit ingest failures: {report.failures[:3]}")
            kbs[chunking] = (kb, report.added, time.perf_counter() - started)
            documents = report.documents
            log(f"{name}: kit {report.added} chunks in {kbs[chunking][2]:.0f} s")
        kb, chunks[side], seconds[side] = kbs[chunking]
        options = SearchOptions.from_settings(side_settings, **search_changes)
        searches[side] = kit_search(store, embedder, kb, options)
    if NAIVE in variants:
        log(f"{name}: naive ingest")
        collection = await naive_collection(client, f"Naive_{name.capitalize()}")
        started = time.perf_counter()
        naive_chunks = await naive_ingest(collection, embedder, docs)
        naive_seconds = time.perf_counter() - started
        log(f"{name}: naive {naive_chunks} chunks in {naive_seconds:.0f} s")
        for alpha in NAIVE_ALPHAS:
            searches[f"naive α={alpha}"] = naive_search(collection, embedder, alpha)
            chunks[f"naive α={alpha}"], seconds[f"naive α={alpha}"] = naive_chunks, naive_seconds
    log(f"{name}: {len(qa)} questions × {len(searches)} pipelines")
    results: dict[str, list[QuestionResult]] = {side: [] for side in searches}
    served: dict[str, list[bool]] = {side: [] for side in searches}
    latencies: dict[str, list[float]] = {side: [] for side in searches}
    for search in searches.values():  # warm-up, outside the timings
        await search("warm up")
    for item in qa:
        for side, search in searches.items():  # interleaved, so drift on the machine hits every side alike
            t = time.perf_counter()
            ranked = await search(item.question)
            latencies[side].append(time.perf_counter() - t)
            results[side].append(score(item, ranked, K))
            served[side].append(any(matches(s, e) for s in ranked[:K] for e in item.expected))
    sides = [
        SideResult(
            name=s,
            chunks=chunks[s],
            ingest_seconds=seconds[s],
            questions=results[s],
            served=served[s],
            latencies=latencies[s],
        )
        for s in searches
    ]
    manifest = json.loads((set_dir / "manifest.json").read_text()) if (set_dir / "manifest.json").exists() else {}
    return {
        "set": name,
        "questions": len(qa),
        "documents": documents,
        "manifest": manifest,
        "sides": {s.name: {"chunks": s.chunks, "ingest_seconds": s.ingest_seconds, **s.row()} for s in sides},
        "per_question": per_question(qa, sides),
    }


def per_question(qa: list[QA], sides: list[SideResult]) -> list[dict[str, Any]]:
    return [
        {
            "question": item.question,
            "expected": list(item.expected),
            **{
                s.name: {
                    "rank": round(1 / s.questions[i].reciprocal_rank) if s.questions[i].reciprocal_rank else None,
                    "top": list(s.questions[i].retrieved[:5]),
                }
                for s in sides
            },
        }
        for i, item in enumerate(qa)
    ]


# --- report ------------------------------------------------------------------------------------------------

METRICS = ("recall@5", "MRR@10", "nDCG@10", "psg@5", "p50 ms")
QUALITY = METRICS[:4]


def table(title: str, rows: dict[str, dict[str, float]], extra: dict[str, str] | None = None) -> str:
    lines = [title, f"  {'pipeline':<22}" + "".join(f"{m:>10}" for m in METRICS) + ("  chunks" if extra else "")]
    for side, row in rows.items():
        cells = "".join(f"{row[m]:>10.1f}" if m == "p50 ms" else f"{row[m]:>10.3f}" for m in METRICS)
        lines.append(f"  {side:<22}{cells}" + (f"  {extra[side]}" if extra else ""))
    return "\n".join(lines)


def report(results: list[dict[str, Any]], machine: str) -> str:
    out = [f"Retrieval on third-party QA sets — {machine}"]
    for r in results:
        extra = {side: f"{v['chunks']} (ingest {v['ingest_seconds']:.0f} s)" for side, v in r["sides"].items()}
        title = f"\n{r['set']}: {r['questions']} questions, {r['documents']} documents"
        out.append(table(title, {side: v for side, v in r["sides"].items()}, extra))
    sides = [side for side in results[0]["sides"] if all(side in r["sides"] for r in results)]  # on every set
    mean = {side: {m: statistics.mean(r["sides"][side][m] for r in results) for m in METRICS} for side in sides}
    out.append(table(f"\nmean over {len(results)} sets", mean))
    if "kit" in sides:
        out.append("\nagainst the kit's defaults (Δ of the mean; worst set):")
        out += [f"  {verdict(results, side)}" for side in sides if side != "kit"]
    naive = [side for side in sides if side.startswith(NAIVE)]
    if naive:
        out.append(f"\nagainst the naive baseline ({', '.join(naive)}): the targets of #17")
        out += [f"  {target(results, side, naive)}" for side in sides if side not in naive]
    return "\n".join(out)


def target(results: list[dict[str, Any]], side: str, naive: list[str]) -> str:
    """#17's targets: on every set recall@5 and MRR@10 at least the best naive alpha's; on the mean recall@5
    +0.04 and MRR@10 +0.06 over the naive alpha that is best on the mean."""
    mean = {s: {m: statistics.mean(r["sides"][s][m] for r in results) for m in QUALITY} for s in [side, *naive]}
    base = max(naive, key=lambda s: (mean[s]["recall@5"], mean[s]["MRR@10"]))
    cells = []
    for metric, need in (("recall@5", 0.04), ("MRR@10", 0.06)):
        gap = mean[side][metric] - mean[base][metric]
        worst = min((r["sides"][side][metric] - max(r["sides"][n][metric] for n in naive), r["set"]) for r in results)
        cells.append(f"{metric} {gap:+.3f} (need {need:+.2f}; worst set vs naive best {worst[0]:+.3f} {worst[1]})")
    return f"{side:<22}" + "  ".join(cells)


def verdict(results: list[dict[str, Any]], side: str, base: str = "kit") -> str:
    """The rule defaults are chosen by: better on the mean in every quality metric, and worse on no set."""
    deltas = {m: [r["sides"][side][m] - r["sides"][base][m] for r in results] for m in QUALITY}
    means = {m: statistics.mean(d) for m, d in deltas.items()}
    worst = {m: min(zip(d, (r["set"] for r in results), strict=True)) for m, d in deltas.items()}
    wins = all(v >= 0 for v in means.values()) and any(v > 0 for v in means.values())
    wins = wins and all(delta >= 0 for delta, _ in worst.values())
    cells = "  ".join(f"{m} {means[m]:+.3f} (worst {worst[m][0]:+.3f} {worst[m][1]})" for m in QUALITY)
    return f"{side:<22}{cells}  → {'wins' if wins else 'does not win'}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_all(
    set_dirs: list[Path], settings: Settings, local: LocalWeaviate, variants: list[str], cache: Path
) -> list[dict[str, Any]]:
    embedder = CachedEmbedder(create_embedder(settings), cache)
    client = local_client(local)
    await client.connect()
    try:
        async with open_store(settings) as store:
            results = []
            for d in set_dirs:
                results.append(await run_set(d, settings, embedder, store, client, variants))
                log(f"embedding cache: {embedder.hits} hits, {embedder.misses} embedded so far")
                log(report(results[-1:], "this set"))  # a long run's sets as they finish
            return results
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=Path, default=DEFAULT_OUT, help="where bench.qa_sets wrote the sets")
    parser.add_argument("--set", action="append", dest="names", help="only this set (repeatable)")
    parser.add_argument(
        "--variants",
        type=lambda v: [name.strip() for name in v.split(",") if name.strip()],
        default=[*KIT_VARIANTS, NAIVE],
        help=f"comma-separated pipelines to run (default all): {', '.join([*KIT_VARIANTS, NAIVE])}",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the chunk-embedding cache (SQLite)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "out" / "retrieval.json", help="per-question ranks"
    )
    parser.add_argument(
        "--combine", nargs="+", type=Path, metavar="OUT", help="only print the report of earlier runs' --out files"
    )
    args = parser.parse_args()
    if args.combine:  # sets run by separate processes (same variants), reported together
        runs = [json.loads(path.read_text()) for path in args.combine]
        print(report([r for run in runs for r in run["sets"]], runs[0]["machine"]))
        return
    unknown = [v for v in args.variants if v not in KIT_VARIANTS and v != NAIVE]
    if unknown or not args.variants:
        sys.exit(f"unknown variants {unknown}: choose from {', '.join([*KIT_VARIANTS, NAIVE])}")
    set_dirs = sorted(p.parent for p in args.sets.glob("*/qa.jsonl") if not args.names or p.parent.name in args.names)
    if not set_dirs:
        sys.exit(f"no QA sets under {args.sets}: run scripts/bench-data.sh (or python -m bench.qa_sets build)")

    started = time.perf_counter()
    with bench_run("switchboard-bench-") as run:
        results = asyncio.run(run_all(set_dirs, run.settings, run.local, args.variants, args.cache))
    print(report(results, machine()))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "sets": results}, indent=1))


if __name__ == "__main__":
    main()
