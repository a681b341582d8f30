"""Knowledge bases: ingest, search, eval, kb list/delete, status."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from core.errors import SwitchboardError
from core.types import heading
from switchboard.cli.base import (
    CrawlOption,
    DepthOption,
    JsonOption,
    KBOption,
    MaxPagesOption,
    PrefixOption,
    _crawl_options,
    _embedder,
    _fail,
    _kb,
    _progress,
    _run,
    _settings,
    _stop_on_sigterm,
    app,
    err,
    eval_app,
    kb_app,
    out,
)

if TYPE_CHECKING:  # imported lazily at run time, like every command's core modules
    from core.evaluate import EvalReport, EvalRun


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Files, directories, http(s) URLs or sitemap.xml URLs.")],
    kb: KBOption = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove documents gone from these sources.")] = False,
    crawl: CrawlOption = False,
    depth: DepthOption = None,
    max_pages: MaxPagesOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Add or update documents in a knowledge base (only changed chunks are embedded)."""
    from core.ingest.crawl import CrawlOptions
    from core.ingest.pipeline import count_summary
    from core.ingest.websync import ingest_inputs
    from core.store.client import open_store

    settings = _settings()
    name = _kb(settings, kb)
    options = _crawl_options(crawl, depth, max_pages, prefix)
    if crawl:
        if len(sources) != 1:
            _fail("--crawl takes one start URL")
        try:  # a bad option is refused before the model loads
            CrawlOptions.parse(options)
        except SwitchboardError as exc:
            _fail(str(exc))
    embedder = _embedder(settings)

    async def go() -> Any:
        stop = _stop_on_sigterm()
        with _progress() as progress:
            async with open_store(settings) as store:
                # URLs are streamed with their pages' validators kept: a second run skips unchanged pages
                return await ingest_inputs(
                    store,
                    embedder,
                    sources,
                    kb=name,
                    settings=settings,
                    prune=prune,
                    crawl=options if crawl else None,
                    progress=progress,
                    stop=stop,
                )

    report = _run(go)
    out.print(f"[bold]{name}[/bold]: {count_summary(report)} in {report.seconds:.1f}s", highlight=False)
    for source, reason in report.failures:
        err.print(f"[yellow]skipped[/yellow] {escape(source)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if report.failures:
        _fail(f"{len(report.failures)} source(s) could not be read; fix or remove them and run again")


@app.command()
def search(
    query: str,
    kb: KBOption = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Number of results.")] = 5,
    alpha: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="0 = keyword only, 1 = vector only.")] = None,
    source_prefix: Annotated[str | None, typer.Option(help="Only sources starting with this path or URL.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Hybrid search (BM25 + vectors) in a knowledge base."""
    from core.store.client import open_store
    from core.store.rerank import open_reranker
    from core.store.search import SearchOptions, retrieve

    settings = _settings()
    name = _kb(settings, kb)
    embedder = _embedder(settings)
    options = SearchOptions.from_settings(settings, top_k=k, alpha=alpha, source_prefix=source_prefix)

    async def go() -> Any:
        async with open_store(settings) as store, open_reranker(settings) as reranker:
            await store.require_chunks(name)
            return await retrieve(store, embedder, name, query, options, reranker)

    results = _run(go)
    if as_json:
        rows = [{k: getattr(r, k) for k in ("title", "source", "section", "snippet", "score")} for r in results]
        print(json.dumps({"query": query, "results": rows}, ensure_ascii=False, indent=2))
        return
    if not results:
        out.print("no results")
    for i, r in enumerate(results, 1):
        out.print(f"[bold][{i}] {escape(heading(r.title, r.section))}[/bold]  score {r.score:.3f}", highlight=False)
        out.print(f"    [cyan]{escape(r.source)}[/cyan]", highlight=False)
        out.print(f"    {escape(r.snippet)}\n", highlight=False)


@eval_app.command("run")
def eval_command(
    qa_file: Annotated[Path, typer.Argument(help='JSONL: {"question": ..., "expected_sources": [...]} per line.')],
    kb: KBOption = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100)] = 5,
    alpha: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="A second run with these overrides, side by side: key=value for kb, alpha, k, doc_cap, doc_damping, "
            "doc_length_penalty, keyword_fields, fusion (relative|ranked), question_words (on|off) (e.g. "
            "'kb=docs_v2' or 'alpha=0.5,doc_cap=0' or 'keyword_fields=text+title').",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure retrieval: recall@k and MRR@10 (with --compare: two runs and what changed per question)."""
    from core.evaluate import EvalRun, evaluate, load_qa
    from core.store.client import open_store
    from core.store.search import SearchOptions

    settings = _settings()
    name = _kb(settings, kb)
    first = EvalRun(
        kb=name,
        k=k,
        options=SearchOptions.from_settings(settings, alpha=alpha),
    )
    try:
        qa = load_qa(qa_file)
        runs = [first] if compare is None else [first, first.with_overrides(compare)]
    except SwitchboardError as exc:
        _fail(str(exc))
    embedder = _embedder(settings)

    async def go() -> Any:
        async with open_store(settings) as store:
            return [await evaluate(store, embedder, r.kb, qa, k=r.k, options=r.options) for r in runs]

    reports = _run(go)
    if len(runs) == 2:
        _print_comparison(runs, reports, as_json)
        return
    if as_json:
        print(json.dumps(_eval_payload(first, reports[0]), ensure_ascii=False, indent=2))
        return
    report = reports[0]
    for q in report.questions:
        if q.reciprocal_rank == 0.0:
            out.print(
                f"[yellow]miss[/yellow] {escape(q.question)}  (expected {escape(', '.join(q.expected))})",
                highlight=False,
            )
    out.print(
        f"{len(report.questions)} questions, alpha {first.options.alpha}: recall@{k} {report.recall_at_k:.3f}, "
        f"MRR@10 {report.mrr_at_10:.3f}",
        highlight=False,
    )


def _eval_payload(run: EvalRun, report: EvalReport) -> dict[str, Any]:
    return {
        **run.settings(),
        "questions": len(report.questions),
        f"recall@{run.k}": report.recall_at_k,
        "mrr@10": report.mrr_at_10,
        "results": [asdict(q) for q in report.questions],
    }


def _print_comparison(runs: list[EvalRun], reports: list[EvalReport], as_json: bool) -> None:
    """Both runs' scores side by side, then each question whose result changed: lost, gained, rank moved."""
    from core.evaluate import changes

    changed = changes(reports[0], reports[1])
    if as_json:
        rows = [{**asdict(c), "kind": c.kind} for c in changed]
        payload = {"a": _eval_payload(runs[0], reports[0]), "b": _eval_payload(runs[1], reports[1]), "changes": rows}
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    a, b = reports
    out.print(f"A: {runs[0].describe()}\nB: {runs[1].describe()}", highlight=False, soft_wrap=True)
    table = Table("", "A", "B", "B − A")
    for label, x, y in (
        (f"recall@{a.k}" if a.k == b.k else "recall@k", a.recall_at_k, b.recall_at_k),
        ("MRR@10", a.mrr_at_10, b.mrr_at_10),
    ):
        table.add_row(label, f"{x:.3f}", f"{y:.3f}", f"{y - x:+.3f}")
    out.print(table)
    kinds = {"lost": "[red]found by A only[/red]", "gained": "[green]found by B only[/green]", "moved": "rank moved"}
    for c in changed:
        ranks = f"rank {c.rank_a or 'miss'} → {c.rank_b or 'miss'}"
        out.print(
            f"{kinds[c.kind]} ({ranks}) {escape(c.question)}  (expected {escape(', '.join(c.expected))})",
            highlight=False,
            soft_wrap=True,
        )
    both = sum(
        1 for x, y in zip(a.questions, b.questions, strict=True) if not x.reciprocal_rank and not y.reciprocal_rank
    )
    out.print(f"{len(a.questions)} questions: {len(changed)} changed, {both} missed by both", highlight=False)


@kb_app.command("list")
def kb_list(as_json: JsonOption = False) -> None:
    """Knowledge bases with document and chunk counts."""
    from core.store.client import open_store

    settings = _settings()

    async def go() -> Any:
        async with open_store(settings) as store:
            return await store.list_kbs()

    kbs = _run(go)
    if as_json:
        print(
            json.dumps([{"name": s.name, "documents": s.documents, "chunks": s.chunks, **asdict(s.meta)} for s in kbs])
        )
        return
    # "vectors of": how the KB's chunks are embedded (KBMeta.embed_text); an older way stays until `kb reembed`.
    # Long model names fold rather than being cut at 80 columns (the width when piped).
    table = Table("KB", "documents", "chunks", Column("embedder", overflow="fold"), Column("vectors of", no_wrap=True))
    for s in kbs:
        embedder = f"{s.meta.embed_model} ({s.meta.embed_dim})"
        table.add_row(s.name, str(s.documents), str(s.chunks), embedder, s.meta.embed_text)
    out.print(table if kbs else "no knowledge bases yet; add one with `switchboard ingest PATH`")


@kb_app.command("delete")
def kb_delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False
) -> None:
    """Delete a knowledge base and all its chunks."""
    from core.ingest.lock import kb_write_lock
    from core.store.client import open_store

    settings = _settings()
    kb = _kb(settings, name)
    if not yes and not typer.confirm(f"Delete knowledge base {kb!r} and all its chunks?"):
        _fail("not deleted")

    async def go() -> None:
        async with open_store(settings) as store, kb_write_lock(settings, kb, wait=False):
            await store.delete_kb(kb)

    _run(go)
    out.print(f"deleted {kb}")


@kb_app.command("reembed")
def kb_reembed(
    name: str,
    embed_model: Annotated[str, typer.Option("--embed-model", help="The new embedding model (EMBED_MODEL).")],
    embed_provider: Annotated[
        str | None, typer.Option("--embed-provider", help="local or openai (default: EMBED_PROVIDER).")
    ] = None,
    embed_base_url: Annotated[
        str | None, typer.Option("--embed-base-url", help="OpenAI-compatible endpoint (default: EMBED_BASE_URL).")
    ] = None,
    embed_model_path: Annotated[
        Path | None, typer.Option("--embed-model-path", help="A local model directory (EMBED_MODEL_PATH).")
    ] = None,
) -> None:
    """Re-embed a knowledge base's stored chunks with another embedder, then switch to it atomically."""
    from core.ingest.reembed import reembed
    from core.store.client import open_store

    settings = _settings()
    kb = _kb(settings, name)
    if embed_provider not in (None, "local", "openai"):
        _fail(f"--embed-provider must be local or openai, not {embed_provider!r}")
    overrides: dict[str, Any] = {"embed_model": embed_model}
    if embed_provider is not None:
        overrides["embed_provider"] = embed_provider
    if embed_base_url is not None:
        overrides["embed_base_url"] = embed_base_url
    if embed_model_path is not None or embed_model != settings.embed_model:
        overrides["embed_model_path"] = embed_model_path  # EMBED_MODEL_PATH holds the configured model, not this one
    new_settings = settings.model_copy(update=overrides)
    embedder = _embedder(new_settings)

    async def go() -> Any:
        with _progress() as progress:
            async with open_store(settings) as store:
                return await reembed(store, embedder, kb=kb, settings=settings, progress=progress)

    report = _run(go)
    out.print(
        f"[bold]{kb}[/bold]: {report.chunks} chunks re-embedded with {report.after.embed_model} "
        f"({report.after.embed_dim} dims, was {report.before.embed_model}) in {report.seconds:.1f}s; now serving",
        highlight=False,
    )
    setting = [f"EMBED_MODEL={new_settings.embed_model}", f"EMBED_PROVIDER={new_settings.embed_provider}"]
    if new_settings.embed_provider == "openai" and new_settings.embed_base_url:
        setting.append(f"EMBED_BASE_URL={new_settings.embed_base_url}")
    if new_settings.embed_model_path is not None:
        setting.append(f"EMBED_MODEL_PATH={new_settings.embed_model_path}")
    out.print(
        f"set {' '.join(setting)} for every process that searches or ingests {kb!r} (server, bots, ingest) and "
        "restart them: until then they query it with the old embedder",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Is Weaviate reachable, which embedder is configured, which KBs exist."""
    from core.shared_state import state_backend
    from core.store.client import open_store

    settings = _settings()
    embedder_name = f"{settings.embed_provider}: {settings.embed_model}"

    async def go() -> Any:
        async with open_store(settings) as store:
            return await store.server_version(), await store.cluster_health(), await store.list_kbs()

    version, health, kbs = _run(go)
    where = settings.weaviate_url or f"local (127.0.0.1:{settings.weaviate_local_port}, {settings.weaviate_dir})"
    if as_json:
        rows = [{"name": s.name, "documents": s.documents, "chunks": s.chunks, **asdict(s.meta)} for s in kbs]
        nodes = {"healthy": health.summary, "serving": health.serving, "nodes": [asdict(n) for n in health.nodes]}
        weaviate = {"url": where, "version": version, "consistency": health.consistency, **nodes}
        print(json.dumps({"weaviate": weaviate, "embedder": embedder_name, "kbs": rows}))
        return
    out.print(f"Weaviate {version} at {where}: reachable", highlight=False)
    out.print(f"Nodes {health.summary}" if health.serving else f"[red]Nodes {health.summary}[/red]", highlight=False)
    for n in health.nodes:
        out.print(f"  {n.name}: {n.status} {n.version}, {n.shards} shards, {n.objects} objects", highlight=False)
    out.print(f"Embedder {embedder_name}", highlight=False)
    out.print(f"Shared state: {state_backend(settings)}", highlight=False)
    for s in kbs:
        mismatch = "" if s.meta.embed_model == settings.embed_model else "  [red](built with another embedder)[/red]"
        out.print(
            f"KB {s.name}: {s.documents} documents, {s.chunks} chunks, {s.meta.embed_model}{mismatch}", highlight=False
        )
    if not kbs:
        out.print("No knowledge bases yet: `switchboard ingest PATH`")
