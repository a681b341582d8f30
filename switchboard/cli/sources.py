"""A knowledge base's registered sources (`source add/list/remove`) and `sync`, which ingests them again."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

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
    _run,
    _settings,
    _stop_on_sigterm,
    _when,
    app,
    out,
)

if TYPE_CHECKING:  # imported lazily at run time, like every command's core modules
    from core.config import Settings
    from core.ingest.registry import Registry, SyncRun

source_app = typer.Typer(no_args_is_help=True, help="A knowledge base's registered sources, synced by `sync`.")
app.add_typer(source_app, name="source")


def _registry() -> Registry:
    from core.ingest.registry import Registry

    return Registry.for_settings(_settings())


def _outcome(run: SyncRun | None) -> str:
    if run is None:
        return "never synced"
    if run.error and not run.documents:
        return f"failed: {run.error}"
    from core.ingest.pipeline import count_summary

    return count_summary(run) + (f"; {run.error}" if run.error else "")


@source_app.command("add")
def source_add(
    target: Annotated[
        str,
        typer.Argument(
            help="A file, a directory, an http(s) URL, a sitemap.xml URL, or a connector: confluence:SPACE_KEY, "
            "notion:PAGE_OR_DATABASE_ID, drive:FOLDER_ID (credentials from the settings)."
        ),
    ],
    kb: KBOption = None,
    sitemap: Annotated[bool, typer.Option("--sitemap", help="TARGET is a sitemap: ingest every page.")] = False,
    prune: Annotated[
        bool | None,
        typer.Option("--prune/--no-prune", help="Each sync removes documents gone from it (default: connectors only)."),
    ] = None,
    every: Annotated[str | None, typer.Option("--every", help="How often to sync it: 30m, 6h, 1d.")] = None,
    crawl: CrawlOption = False,
    depth: DepthOption = None,
    max_pages: MaxPagesOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Register a source of a knowledge base (nothing is ingested until `switchboard sync`)."""
    settings = _settings()
    name = _kb(settings, kb)
    options = _crawl_options(crawl, depth, max_pages, prefix)
    registry = _registry()
    source = _run(
        lambda: registry.add(
            kb=name, target=target, sitemap=sitemap, prune=prune, every=every, options=options, crawl=crawl
        )
    )
    out.print(f"{source.id}  {source.kind} {escape(source.target)} → {name}", highlight=False)


@source_app.command("list")
def source_list(kb: KBOption = None, as_json: JsonOption = False) -> None:
    """Registered sources, with each one's next scheduled sync and the result of its last."""
    from core.ingest.schedule import next_sync

    registry = _registry()
    name = None if kb is None else _kb(_settings(), kb)
    sources = _run(lambda: registry.sources(name))
    if as_json:
        print(json.dumps({"sources": [asdict(s) for s in sources]}, ensure_ascii=False, indent=2))
        return
    if not sources:
        out.print("no sources; add one with `switchboard source add --kb KB TARGET`")
        return
    table = Table("id", "kb", "kind", "target", "every", "prune", "last sync")
    table.columns[3].overflow = "fold"  # a path or URL is copied whole, never cut short
    now = time.time()
    for s in sources:
        last = "" if s.last is None else f"{_when(s.last.finished_at)}: "
        due = next_sync(s)
        every = "" if due is None else f"{s.every}, {'due' if due <= now else 'next ' + _when(due)}"
        table.add_row(s.id, s.kb, s.kind, escape(s.target), every, "yes" if s.prune else "", last + _outcome(s.last))
    out.print(table)


@source_app.command("remove")
def source_remove(source_id: Annotated[str, typer.Argument(help="The id `source list` shows.")]) -> None:
    """Forget a source and its sync history; its documents stay in the KB."""
    registry = _registry()
    source = _run(lambda: registry.remove(source_id))
    out.print(f"removed {source.id} ({escape(source.target)}) from {source.kb}", highlight=False)


@source_app.command("history")
def source_history(
    source_id: Annotated[str, typer.Argument(help="The id `source list` shows.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs, newest first.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """A source's last sync runs: when, how long, documents and chunks added/updated/unchanged/deleted, errors."""
    from core.ingest.schedule import next_sync

    registry = _registry()

    async def read() -> Any:
        source = await registry.get(source_id)
        return source, (await registry.history(source.id))[:limit]

    source, runs = _run(read)
    due = next_sync(source)
    if as_json:
        print(json.dumps({"source": asdict(source), "next_sync": due, "history": [asdict(r) for r in runs]}, indent=2))
        return
    schedule = f"every {source.every}, next {_when(due)}" if due is not None else "synced only by `switchboard sync`"
    out.print(f"{source.id}  {source.kind} {escape(source.target)} → {source.kb} ({schedule})", highlight=False)
    if not runs:
        out.print("never synced")
        return
    table = Table("started", "took", "documents", "unchanged", "pruned", "chunks +", "~", "=", "-", "error")
    table.columns[-1].overflow = "fold"
    for r in runs:
        counts = (r.documents, r.documents_unchanged, r.documents_pruned, r.added, r.updated, r.unchanged, r.deleted)
        took = f"{r.finished_at - r.started_at:.1f}s"
        table.add_row(_when(r.started_at), took, *map(str, counts), escape(r.error or ""))
    out.print(table)


@app.command()
def sync(
    kb: KBOption = None,
    source_id: Annotated[str | None, typer.Option("--source", help="Only this source (its id).")] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Keep running: sync each source registered with --every when it is due, as `serve` does "
            "(Ctrl-C or SIGTERM stops at a document boundary).",
        ),
    ] = False,
) -> None:
    """Ingest registered sources again (all, a KB's, or one): only changed documents are embedded."""
    from core.ingest.sync import sync_all
    from core.store.client import open_store

    settings = _settings()
    name = None if kb is None else _kb(settings, kb)
    if watch:
        if source_id is not None:
            _fail("--watch syncs every due source (of --kb); --source syncs one source now")
        _watch(settings, name)
        return
    registry = _registry()

    async def chosen() -> Any:
        if source_id is not None:
            return [await registry.get(source_id, name)]
        return await registry.sources(name)

    sources = _run(chosen)
    if not sources:
        _fail(f"no sources registered{f' for knowledge base {name!r}' if name else ''}; add one with `source add`")
    embedder = _embedder(settings)

    async def go() -> Any:
        stop = _stop_on_sigterm()
        async with open_store(settings) as store:
            return await sync_all(registry, store, embedder, sources, settings=settings, stop=stop)

    results = _run(go)
    failed = [r for r in results if r.run.error]  # as `ingest`: a source with unreadable documents fails too
    for r in results:
        colour = "red" if r.report is None else "yellow" if r.run.error else "green"
        out.print(
            f"[{colour}]{r.source.id}[/{colour}] {r.source.kb} {escape(r.source.target)}: "
            f"{escape(_outcome(r.run))} in {r.run.finished_at - r.run.started_at:.1f}s",
            highlight=False,
            soft_wrap=True,
        )
    if failed:
        _fail(f"{len(failed)} of {len(results)} source(s) failed: " + ", ".join(r.source.id for r in failed))


def _watch(settings: Settings, kb: str | None) -> None:
    from core.ingest.lease import create_leases
    from core.ingest.schedule import SyncScheduler
    from core.shared_state import open_redis
    from core.store.client import open_store

    registry = _registry()
    embedder = _embedder(settings)

    async def go() -> None:
        stop = asyncio.Event()  # the sync in progress stops between documents; the next run repairs the rest
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        async with open_store(settings) as store, open_redis(settings) as redis:
            leases = create_leases(settings, redis)
            scheduler = SyncScheduler(registry, store, embedder, leases, settings=settings, kb=kb)
            async with scheduler.running():
                out.print(f"syncing the sources{f' of {kb}' if kb else ''} when due (Ctrl-C stops)", highlight=False)
                await stop.wait()

    _run(go)
    out.print("stopped")
