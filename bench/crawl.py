"""Crawl and web-source sync benchmark: a generated site on a loopback port, crawled as a registered source.

    python -m bench.crawl [--pages 500] [--big 5000] [--polite 40]

Starts a dedicated local Weaviate, then each phase in its own process (peak RSS is per phase), each serving the
generated site from a child process of its own (so the server's work is not on the crawler's interpreter):
  sync     the real embedder: first crawl of --pages pages, the unchanged re-sync (embedding calls counted),
           one changed page; then the crawl alone (no pipeline) at CRAWL_DELAY_SECONDS=0 and, over --polite
           pages, at the default politeness
  memory   --big pages with a hashing embedder (no model in memory, so RSS is the crawl and the pipeline):
           the streamed crawl, against the old path that reads a whole sitemap of the same pages first
Prints a table and writes bench/out/crawl.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bench._common import REPO, add_phase_arguments, bench_run, machine, peak_rss_mb, print_table, save, settings_for
from core.config import Settings
from core.embed import Embedder, create_embedder
from core.ingest.crawl import CrawlOptions, WebReader
from core.ingest.egress import ingest_client
from core.ingest.pipeline import ingest
from core.ingest.registry import Registry
from core.ingest.sync import sync_source
from core.store.client import open_store
from tests.support.embedders import Wrapped
from tests.support.site import Site, page, serve_site

FANOUT = 10
WORDS = "queue worker backup restore index shard replica token cache proxy cluster node deploy rollback".split()  # noqa: SIM905
# What a docs theme wraps every page in (stripped by extraction): real pages weigh tens of kB, not the text alone.
CHROME = (
    "<footer>" + "<p>Site footer: legal notice, cookie settings, language menu, social links.</p>" * 300 + "</footer>"
)


def text_of(i: int, version: int = 0) -> str:
    rng = random.Random(i * 7919 + version)
    sentences = (" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(10))
    return f"Page {i} (version {version}). " + " ".join(sentences)


def build_site(pages: int) -> Site:
    """A tree (page i links to 10i+1 … 10i+10) with links back home and to its neighbours, some written as
    variants (trailing slash, fragment) that the crawler must fold into one page."""
    site = Site()
    site.put("/robots.txt", "User-agent: *\nDisallow: /private/\n", "text/plain")
    for i in range(pages):
        site.put(f"/p/{i}", page(f"Page {i}", text_of(i), links_of(i, pages)) + CHROME)
    entries = "".join(f"<url><loc>{{base}}/p/{i}</loc></url>" for i in range(pages))
    site.put("/sitemap.xml", f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>')
    return site


def links_of(i: int, pages: int) -> list[str]:
    children = [f"/p/{c}" for c in range(FANOUT * i + 1, min(FANOUT * i + FANOUT, pages - 1) + 1)]
    return [*children, "/p/0/", f"/p/{max(i - 1, 0)}#top", f"/p/{min(i + 1, pages - 1)}/", "/private/x"]


def lastmod_sitemap(site: Site, pages: int) -> str:
    """/sitemap.xml with each page's <lastmod> (its Last-Modified), as a docs generator writes it."""

    def entry(i: int) -> str:
        when = datetime.fromtimestamp(site.pages[f"/p/{i}"].modified, UTC).isoformat()
        return f"<url><loc>{site.base}/p/{i}</loc><lastmod>{when}</lastmod></url>"

    return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{"".join(map(entry, range(pages)))}</urlset>'


def serve(pages: int) -> None:
    """The site in this process: prints its base URL, then applies lines read from stdin: `change I` (a new
    version of page I, its <lastmod> in /lastmod.xml moved on), `log` (prints the requests since the last `log`
    by status, as JSON)."""
    with serve_site(build_site(pages)) as site:
        sitemap = site.pages["/sitemap.xml"]
        sitemap.body = sitemap.body.replace(b"{base}", site.base.encode())
        sitemap.content_type = "application/xml"
        site.put("/lastmod.xml", lastmod_sitemap(site, pages), "application/xml")
        print(site.base, flush=True)
        for line in sys.stdin:
            if line.startswith("log"):
                log, site.log[:] = list(site.log), []
                print(
                    json.dumps({str(s): sum(1 for _, got in log if got == s) for s in {s for _, s in log}}), flush=True
                )
                continue
            i = int(line.split()[1])
            site.put(f"/p/{i}", page(f"Page {i}", text_of(i, version=1), links_of(i, pages)) + CHROME)
            site.put("/lastmod.xml", lastmod_sitemap(site, pages), "application/xml")
            print("ok", flush=True)


@contextmanager
def site_process(pages: int) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    args = [sys.executable, "-m", "bench.crawl", "--serve", str(pages)]
    proc = subprocess.Popen(args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        yield proc.stdout.readline().strip(), proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        if proc.stdin is not None:
            proc.stdin.close()


class Counting(Wrapped):
    calls = 0
    texts = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed_documents(texts)


class HashEmbedder:
    """Deterministic vectors from a hash: no model in memory, so the memory phase measures the crawl."""

    name = "bench-hash"
    dim = 32

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        return [b / 255 - 0.5 for b in digest]


def depth_for(pages: int) -> int:
    depth, reach = 0, 1
    while reach < pages:
        depth, reach = depth + 1, reach * FANOUT + 1
    return depth


async def crawl_only(settings: Settings, base: str, pages: int) -> float:
    """The crawler alone (fetch, parse, de-dup), no pipeline: seconds for `pages` pages."""
    started = time.perf_counter()
    async with ingest_client(settings) as client:
        reader = WebReader(client, settings, origin=f"{base}/p/0", known={})
        seen = 0
        async for batch in reader.crawl(f"{base}/p/0", CrawlOptions(depth=depth_for(pages), max_pages=pages)):
            seen += len(batch.docs)
    assert seen == pages, seen
    return time.perf_counter() - started


def phase_sync(settings: Settings, pages: int, polite: int) -> dict[str, Any]:
    embedder = Counting(create_embedder(settings))
    settings = settings.model_copy(update={"crawl_delay_seconds": 0.0})
    registry = Registry.for_settings(settings)
    result: dict[str, Any] = {}

    async def run(base: str, proc: subprocess.Popen[str]) -> None:
        options = {"depth": depth_for(pages), "max_pages": pages}
        source = await registry.add(
            kb="crawl", target=f"{base}/p/0", sitemap=False, prune=True, every=None, crawl=True, options=options
        )
        embedder.embed_documents(["warm up"])  # the model loads before the clock starts
        async with open_store(settings) as store:
            for name in ("first", "unchanged", "changed"):
                if name == "changed":
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(f"change {pages * 3 // 10}\n")
                    proc.stdin.flush()
                    proc.stdout.readline()
                embedder.calls = embedder.texts = 0
                synced = await sync_source(registry, store, embedder, source, settings=settings)
                run_ = synced.run
                assert run_.error is None, run_.error
                result[name] = {
                    "seconds": run_.finished_at - run_.started_at,
                    "documents": run_.documents,
                    "skipped": run_.documents_skipped,
                    "added": run_.added,
                    "updated": run_.updated,
                    "embed_calls": embedder.calls,
                    "embedded": embedder.texts,
                }
        result["crawl_only"] = await crawl_only(settings, base, pages)
        default = Settings(_env_file=None).crawl_delay_seconds
        polite_settings = settings.model_copy(update={"crawl_delay_seconds": default})
        result["polite"] = {
            "pages": polite,
            "delay": default,
            "seconds": await crawl_only(polite_settings, base, polite),
        }

    with site_process(pages) as (base, proc):
        asyncio.run(run(base, proc))
    return {**result, "rss_mb": peak_rss_mb()}


def phase_memory(settings: Settings, pages: int, mode: str) -> dict[str, Any]:
    settings = settings.model_copy(update={"crawl_delay_seconds": 0.0})
    embedder: Embedder = HashEmbedder()
    kb = f"mem_{mode}"

    async def run(base: str) -> dict[str, Any]:
        async with open_store(settings) as store:
            await store.server_version()
            before = peak_rss_mb()
            started = time.perf_counter()
            if mode == "stream":
                registry = Registry.for_settings(settings)
                options = {"depth": depth_for(pages), "max_pages": pages}
                source = await registry.add(
                    kb=kb, target=f"{base}/p/0", sitemap=False, prune=True, every=None, crawl=True, options=options
                )
                synced = await sync_source(registry, store, embedder, source, settings=settings)
                documents = synced.run.documents
            else:  # the old path: every page read into memory first, then ingested
                report = await ingest(store, embedder, [f"{base}/sitemap.xml"], kb=kb, settings=settings)
                documents = report.documents
            seconds = time.perf_counter() - started
        return {"documents": documents, "seconds": seconds, "rss_before_mb": before}

    with site_process(pages) as (base, _):
        result = asyncio.run(run(base))
    return {**result, "rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--big", type=int, default=5000)
    parser.add_argument("--polite", type=int, default=40)
    parser.add_argument("--serve", type=int)
    add_phase_arguments(parser)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.phase:
        settings = settings_for(args.work, args.port, args.grpc).model_copy(
            update={"ingest_allowed_hosts": ("127.0.0.1",)}
        )
        extra = json.loads(args.extra)
        result = {
            "sync": lambda: phase_sync(settings, extra["pages"], extra["polite"]),
            "memory": lambda: phase_memory(settings, extra["pages"], extra["mode"]),
        }[args.phase]()
        print(json.dumps(result))
        return

    with bench_run("switchboard-crawl-bench-") as run:
        sync = run.phase("bench.crawl", "sync", {"pages": args.pages, "polite": args.polite})
        memory = {"pages": args.big}  # --big 0: the sync phase alone
        stream = run.phase("bench.crawl", "memory", {**memory, "mode": "stream"}) if args.big else None
        held = run.phase("bench.crawl", "memory", {**memory, "mode": "held"}) if args.big else None

    first, again, changed = sync["first"], sync["unchanged"], sync["changed"]
    polite = sync["polite"]
    rows = [
        ("site", f"{args.pages} pages, {first['added']} chunks", "real embedder (MiniLM int8)", ""),
        ("first crawl + ingest", f"{first['seconds']:.1f} s", f"{first['embedded']} texts embedded", ""),
        (
            "unchanged re-sync",
            f"{again['seconds']:.2f} s",
            f"{again['embed_calls']} embed calls, {again['skipped']} of {again['documents']} pages not downloaded",
            f"{first['seconds'] / again['seconds']:.0f}x faster (target >= 20x, 0 embed calls)",
        ),
        (
            "one page changed",
            f"{changed['seconds']:.2f} s",
            f"{changed['embedded']} texts embedded, {changed['updated']} chunks updated",
            f"{changed['skipped']} pages not downloaded",
        ),
        ("crawl alone, delay 0", f"{args.pages / sync['crawl_only']:.0f} pages/s", f"{sync['crawl_only']:.1f} s", ""),
        (
            f"crawl alone, delay {polite['delay']:g} s",
            f"{polite['pages'] / polite['seconds']:.2f} pages/s",
            f"{polite['pages']} pages in {polite['seconds']:.1f} s",
            "default CRAWL_DELAY_SECONDS",
        ),
    ]
    for name, m in (("streamed crawl", stream), ("whole sitemap first (old path)", held)):
        if m is None:
            continue
        rows.append(
            (
                f"{args.big} pages: {name}",
                f"peak RSS {m['rss_mb']:.0f} MB (+{m['rss_mb'] - m['rss_before_mb']:.0f} MB)",
                f"{m['rss_before_mb']:.0f} MB before the crawl (imports, store client)",
                f"{m['documents']} documents in {m['seconds']:.0f} s, hashing embedder",
            )
        )
    print_table(f"Switchboard crawl benchmark — {machine()}", rows)
    save("crawl", {"machine": machine(), "sync": sync, "stream": stream, "held": held})


if __name__ == "__main__":
    main()
