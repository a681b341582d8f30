"""Sitemap sync at scale: what a re-sync costs when 1% of a large sitemap changed.

    python -m bench.lastmod [--pages 5000] [--changed 50]

The generated site of bench.crawl (pages of ~25 kB, one chunk each) on a loopback port, in a child process,
and a dedicated local Weaviate. Three KBs ingest the same pages, then --changed pages (spread over the site) get
a new version, and each KB is synced again:
  lastmod     a registered sitemap source whose sitemap carries <lastmod>: unchanged entries not requested
  validators  a registered sitemap source without <lastmod>: every page asked conditionally (304)
  download    the old path (`ingest sitemap.xml` before it kept validators): every page downloaded again
The embedder is a hashing one (no model), so the times are the fetching and the pipeline's, not the model's;
the embedding counts are what a real embedder would be asked for. Prints a table, writes bench/out/lastmod.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from typing import Any

from bench._common import bench_run, machine, print_table, save
from bench.crawl import Counting, HashEmbedder, site_process
from core.config import Settings
from core.ingest.pipeline import IngestReport, ingest
from core.ingest.registry import Registry
from core.ingest.sync import sync_source
from core.store.client import Store, open_store

MODES = ("lastmod", "validators", "download")


def ask(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


async def run(settings: Settings, pages: int, changed: int) -> dict[str, Any]:
    embedder = Counting(HashEmbedder())
    registry = Registry.for_settings(settings)
    results: dict[str, Any] = {mode: {} for mode in MODES}
    with site_process(pages) as (base, proc):
        targets = {"lastmod": f"{base}/lastmod.xml", "validators": f"{base}/sitemap.xml"}
        sources = {
            mode: await registry.add(kb=mode, target=url, sitemap=True, prune=True, every=None)
            for mode, url in targets.items()
        }

        async def once(store: Store, mode: str) -> IngestReport:
            if mode == "download":
                return await ingest(store, embedder, [f"{base}/sitemap.xml"], kb=mode, settings=settings, prune=True)
            synced = await sync_source(registry, store, embedder, sources[mode], settings=settings)
            assert synced.report is not None and synced.run.error is None, synced.run.error
            return synced.report

        async with open_store(settings) as store:
            for phase in ("first", "resync"):
                if phase == "resync":
                    step = pages // changed
                    for i in range(changed):
                        ask(proc, f"change {i * step + step // 2}")
                for mode in MODES:
                    ask(proc, "log")  # clears the request log
                    embedder.calls = embedder.texts = 0
                    started = time.perf_counter()
                    report = await once(store, mode)
                    results[mode][phase] = {
                        "seconds": time.perf_counter() - started,
                        "requests": json.loads(ask(proc, "log")),
                        "embedded": embedder.texts,
                        "documents": report.documents,
                        "skipped": report.documents_skipped,
                        "updated": report.updated,
                    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--changed", type=int, default=50)
    args = parser.parse_args()
    with bench_run("switchboard-lastmod-bench-") as bench:
        # No delay between requests: the measure is the mechanism; at CRAWL_DELAY_SECONDS each request the
        # sync makes costs that much more (reported as the floor at the default politeness).
        update = {"ingest_allowed_hosts": ("127.0.0.1",), "crawl_delay_seconds": 0.0}
        results = asyncio.run(run(bench.settings.model_copy(update=update), args.pages, args.changed))
    delay = Settings(_env_file=None).crawl_delay_seconds
    rows = [["mode", "phase", "seconds", f"floor at {delay:g} s", "requests (by status)", "embedded", "not downloaded"]]
    for mode in MODES:
        for phase in ("first", "resync"):
            r = results[mode][phase]
            # The old path (`download`) is not paced at all; the sources' page requests are, the sitemap's not.
            paced = 0 if mode == "download" else sum(r["requests"].values()) - 1
            requests = ", ".join(f"{n}×{s}" for s, n in sorted(r["requests"].items()))
            rows.append(
                [
                    mode,
                    phase,
                    f"{r['seconds']:.1f}",
                    f"{paced * delay:.0f}",
                    requests,
                    str(r["embedded"]),
                    str(r["skipped"]),
                ]
            )
    title = f"{args.pages}-URL sitemap, {args.changed} pages changed; hashing embedder, delay 0 — {machine()}"
    print_table(title, rows)
    save("lastmod", {"machine": machine(), "pages": args.pages, "changed": args.changed, **results})


if __name__ == "__main__":
    main()
