"""Connector sync benchmark: Confluence, Notion and Google Drive sources served by their loopback fakes
(tests/fakes/, each speaking the service's REST API to its real client library), synced as registered sources.

    python -m bench.connectors [--pages 100] [--big 2000]

Starts a dedicated local Weaviate, then each phase in its own process (peak RSS is per phase):
  sync     per connector, the real embedder: first sync of --pages documents, the unchanged re-sync (bodies
           fetched and texts embedded counted), one edited document
  memory   --big Confluence pages of ~25 kB (a page's macros and layout, stripped by extraction) with a hashing
           embedder (no model in memory, so RSS is the connector and the pipeline): the batched sync, against
           the old path that fetched every changed body before ingesting any
The fakes serve from the phase's process (their threads share its interpreter). Prints a table and writes
bench/out/connectors.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench._common import (
    add_phase_arguments,
    bench_run,
    machine,
    peak_rss_mb,
    print_table,
    save,
    settings_for,
)
from bench.crawl import Counting, HashEmbedder
from core.config import Settings
from core.embed import Embedder, create_embedder
from core.ingest.connectors import open_connector
from core.ingest.connectors.sync import fetch_batch
from core.ingest.pipeline import ingest_found
from core.ingest.registry import Registry
from core.ingest.sync import sync_source
from core.store.client import open_store
from tests.fakes import confluence_server, drive_server, notion_server
from tests.fakes.confluence_server import FakeConfluence
from tests.fakes.drive_server import FakeDrive, Item
from tests.fakes.notion_server import FakeNotion, NotionPage
from tests.fakes.rest import FakeService

# What a real page carries besides its text (layout macros, a footer), stripped by extraction: pages weigh ~25 kB.
PADDING = "<footer>" + "<p>Page footer: labels, page tree, space shortcuts, last edited by.</p>" * 350 + "</footer>"


def text_of(i: int, version: int = 0) -> str:
    return f"Runbook {i} (version {version}): restart the kestrel worker number {i} after draining its queue."


@dataclass
class Fake:
    """One service with `pages` documents, as the phase drives it."""

    fake: FakeService
    target: str
    settings: dict[str, Any]
    edit: Callable[[int], None]
    fetched: Callable[[], int]


def confluence(pages: int, padding: str = "") -> Fake:
    fake = FakeConfluence(max_limit=50).start()
    assert isinstance(fake, FakeConfluence)
    for i in range(pages):
        fake.add(str(1000 + i), "ENG", f"Runbook {i}", f"<p>{text_of(i)}</p>{padding}")
    account = {"confluence_url": fake.base_url, "confluence_user": confluence_server.USER}
    return Fake(
        fake,
        "confluence:ENG",
        account | {"confluence_api_token": SecretStr(confluence_server.TOKEN)},
        edit=lambda i: fake.edit(str(1000 + i), f"<p>{text_of(i, 1)}</p>"),
        fetched=lambda: len(fake.body_fetches()),
    )


def notion(pages: int) -> Fake:
    fake = FakeNotion(max_page=100).start()  # the API's own page size cap
    assert isinstance(fake, FakeNotion)
    ids = [f"{i:08d}-aaaa-bbbb-cccc-{i:012d}" for i in range(pages)]
    for i, page_id in enumerate(ids):
        fake.pages[page_id] = NotionPage(f"Runbook {i}", text_of(i), notion_server.DATABASE)
    return Fake(
        fake,
        f"notion:{notion_server.DATABASE}",
        {"notion_base_url": fake.base_url, "notion_token": SecretStr(notion_server.TOKEN)},
        edit=lambda i: fake.edit(ids[i], text_of(i, 1)),
        fetched=lambda: len(fake.markdown_fetches()),
    )


def drive(pages: int, work: Path) -> Fake:
    fake = FakeDrive(max_page=100).start()
    assert isinstance(fake, FakeDrive)
    fake.items["root"] = Item("Runbooks", drive_server.FOLDER_TYPE, "")

    def html(i: int, version: int = 0) -> bytes:
        return f"<html><head><title>Runbook {i}</title></head><body><p>{text_of(i, version)}</p></body></html>".encode()

    for i in range(pages):
        fake.items[f"doc-{i}"] = Item(f"Runbook {i}", drive_server.DOC_TYPE, "root", html(i))
    return Fake(
        fake,
        "drive:root",
        {"google_drive_endpoint": fake.endpoint, "google_service_account_file": fake.service_account_file(work)},
        edit=lambda i: fake.edit(f"doc-{i}", html(i, 1)),
        fetched=lambda: len(fake.content_fetches()),
    )


def phase_sync(settings: Settings, work: Path, kind: str, pages: int) -> dict[str, Any]:
    made = {
        "confluence": lambda: confluence(pages),
        "notion": lambda: notion(pages),
        "drive": lambda: drive(pages, work),
    }
    case = made[kind]()
    settings = settings.model_copy(update=case.settings)
    embedder = Counting(create_embedder(settings))
    embedder.embed_documents(["warm up"])  # the model loads before the clock starts
    registry = Registry.for_settings(settings)
    result: dict[str, Any] = {}

    async def run() -> None:
        source = await registry.add(kb=f"bench_{kind}", target=case.target, sitemap=False, prune=None, every=None)
        async with open_store(settings) as store:
            for name in ("first", "unchanged", "edited"):
                if name == "edited":
                    case.edit(pages // 3)
                embedder.calls = embedder.texts = 0
                fetched, requests = case.fetched(), len(case.fake.requests)
                run_ = (await sync_source(registry, store, embedder, source, settings=settings)).run
                assert run_.error is None, run_.error
                result[name] = {
                    "seconds": run_.finished_at - run_.started_at,
                    "documents": run_.documents,
                    "unchanged": run_.documents_unchanged,
                    "fetched": case.fetched() - fetched,
                    "other_calls": len(case.fake.requests) - requests - (case.fetched() - fetched),
                    "embedded": embedder.texts,
                }

    try:
        asyncio.run(run())
    finally:
        case.fake.stop()
    return {**result, "rss_mb": peak_rss_mb()}


async def held_sync(settings: Settings, embedder: Embedder, target: str, kb: str) -> int:
    """The old path: every body fetched into memory, then one ingest."""
    connector = open_connector("confluence", target.split(":", 1)[1], settings)
    try:
        refs = list(connector.documents())
        found = await asyncio.to_thread(fetch_batch, connector, refs, int(settings.fetch_max_mb * 1e6), lambda: False)
    finally:
        connector.close()
    async with open_store(settings) as store:
        return (await ingest_found(store, embedder, found, kb=kb, settings=settings)).documents


def phase_memory(settings: Settings, pages: int, mode: str) -> dict[str, Any]:
    case = confluence(pages, PADDING)
    settings = settings.model_copy(update=case.settings)
    embedder: Embedder = HashEmbedder()
    kb = f"mem_{mode}"

    async def run() -> dict[str, Any]:
        async with open_store(settings) as store:
            await store.server_version()
            before = peak_rss_mb()
            started = time.perf_counter()
            if mode == "batched":
                registry = Registry.for_settings(settings)
                source = await registry.add(kb=kb, target=case.target, sitemap=False, prune=None, every=None)
                synced = await sync_source(registry, store, embedder, source, settings=settings)
                assert synced.run.error is None, synced.run.error
                documents = synced.run.documents
            else:
                documents = await held_sync(settings, embedder, case.target, kb)
        return {"documents": documents, "seconds": time.perf_counter() - started, "rss_before_mb": before}

    try:
        result = asyncio.run(run())
    finally:
        case.fake.stop()
    return {**result, "rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--big", type=int, default=2000)
    add_phase_arguments(parser)
    args = parser.parse_args()
    if args.phase:
        settings = settings_for(args.work, args.port, args.grpc)
        extra = json.loads(args.extra)
        result = {
            "sync": lambda: phase_sync(settings, args.work, extra["kind"], extra["pages"]),
            "memory": lambda: phase_memory(settings, extra["pages"], extra["mode"]),
        }[args.phase]()
        print(json.dumps(result))
        return

    with bench_run("switchboard-connectors-bench-") as run:

        def phase(name: str, extra: dict[str, Any]) -> dict[str, Any]:
            return run.phase("bench.connectors", name, extra)

        kinds = ("confluence", "notion", "drive")
        syncs = {kind: phase("sync", {"kind": kind, "pages": args.pages}) for kind in kinds}
        memory = {mode: phase("memory", {"pages": args.big, "mode": mode}) for mode in ("batched", "held") if args.big}

    rows = [("connector", "sync", "time", "fetched", "embedded", "other calls", "")]
    for kind, m in syncs.items():
        for name in ("first", "unchanged", "edited"):
            r = m[name]
            note = f"{m['first']['seconds'] / r['seconds']:.0f}x faster than first" if name == "unchanged" else ""
            rows.append(
                (
                    kind,
                    name,
                    f"{r['seconds']:.2f} s",
                    str(r["fetched"]),
                    str(r["embedded"]),
                    str(r["other_calls"]),
                    note,
                )
            )
    for mode, label in (("batched", "batched (32 at a time)"), ("held", "all bodies first (old path)")):
        if mode in memory:
            m = memory[mode]
            rows.append(
                (
                    f"{args.big} Confluence pages",
                    label,
                    f"{m['seconds']:.0f} s",
                    f"peak RSS {m['rss_mb']:.0f} MB",
                    f"+{m['rss_mb'] - m['rss_before_mb']:.0f} MB",
                    f"{m['documents']} documents",
                    "hashing embedder",
                )
            )
    print_table(f"Switchboard connector sync benchmark ({args.pages} documents each) — {machine()}", rows)
    save("connectors", {"machine": machine(), "syncs": syncs, "memory": memory})


if __name__ == "__main__":
    main()
