"""Web targets ingested without registering them (`switchboard ingest URL [--crawl]`, `ingest sitemap.xml`, admin
POST /urls with or without a crawl) keep their pages' validators as a registered source does: run again, an
unchanged page is answered 304 or not asked for at all (sitemap <lastmod>), nothing is embedded; a changed page
alone is downloaded. Against the loopback site (tests.support.site), the real Weaviate and embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError
from core.ingest.websync import ingest_inputs
from core.store.client import Store
from tests.conftest import loopback_allowed
from tests.servers import RunningServer
from tests.support.site import Site, page, serve_site
from tests.test_admin_api import admin, call, ingested  # noqa: F401 - `admin` is a fixture
from tests.test_cli import run
from tests.test_crawl import stored_sources
from tests.test_ingest import CountingEmbedder


@pytest.fixture
def site() -> Iterator[Site]:
    with serve_site(Site()) as running:
        yield running


def sitemap(site: Site, lastmods: dict[str, str | None]) -> None:
    def entry(path: str, lastmod: str | None) -> str:
        return f"<url><loc>{site.base}{path}</loc>" + (f"<lastmod>{lastmod}</lastmod>" if lastmod else "") + "</url>"

    entries = "".join(entry(p, m) for p, m in lastmods.items())
    xml = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
    site.put("/sitemap.xml", xml, "application/xml")


async def test_sitemap_page_and_file_skip_unchanged(
    site: Site, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    settings = loopback_allowed(settings).model_copy(update={"data_dir": tmp_path / "data"})
    for name in ("one", "two", "three", "single"):
        site.put(f"/{name}", page(name.title(), f"Page {name} mentions herons."))
    sitemap(site, {"/one": "2026-01-01", "/two": "2026-01-01", "/three": None})
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nKingfishers dive.\n")
    inputs = [f"{site.base}/sitemap.xml", f"{site.base}/single", str(notes)]
    counting = CountingEmbedder(embedder)

    first = await ingest_inputs(store, counting, inputs, kb=kb, settings=settings)
    assert (first.documents, first.documents_skipped) == (5, 0) and len(site.bodies()) == 5

    site.log.clear()
    counting.texts.clear()
    again = await ingest_inputs(store, counting, inputs, kb=kb, settings=settings)
    assert counting.texts == []
    # /one and /two not asked for (lastmod unchanged), /three and /single asked conditionally: 304
    assert site.log == [("/sitemap.xml", 200), ("/three", 304), ("/single", 304)]
    assert (again.documents, again.documents_unchanged, again.documents_skipped) == (5, 5, 4)

    site.log.clear()
    site.put("/single", page("Single", "Page single now mentions storks."))
    changed = await ingest_inputs(store, counting, inputs, kb=kb, settings=settings)
    assert site.bodies() == ["/sitemap.xml", "/single"] and changed.documents_skipped == 3
    assert len(counting.texts) == 1 and "storks" in counting.texts[0]

    sitemap(site, {"/one": "2026-01-01", "/two": "2026-01-01"})
    pruned = await ingest_inputs(store, counting, inputs[:1], kb=kb, settings=settings, prune=True)
    assert pruned.documents_pruned == 1 and f"{site.base}/three" not in await stored_sources(store, kb)

    site.log.clear()
    with pytest.raises(IngestError, match="no such file or directory"):
        await ingest_inputs(store, counting, [*inputs, str(tmp_path / "missing.md")], kb=kb, settings=settings)
    assert site.log == []  # refused before anything was fetched


async def test_crawl_runs_again_without_downloading(
    site: Site, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    settings = loopback_allowed(settings).model_copy(update={"crawl_delay_seconds": 0, "data_dir": tmp_path / "data"})
    site.put("/", page("Home", "Start.", ["/a", "/b"]))
    site.put("/a", page("A", "Alpha mentions owls.", ["/a/deep"]))
    site.put("/a/deep", page("Deep", "Deep mentions cranes."))
    site.put("/b", page("B", "Beta mentions herons."))
    counting = CountingEmbedder(embedder)
    start = [f"{site.base}/"]
    first = await ingest_inputs(store, counting, start, kb=kb, settings=settings, crawl={"depth": 2})
    assert first.documents == 4

    site.log.clear()
    counting.texts.clear()
    again = await ingest_inputs(store, counting, start, kb=kb, settings=settings, crawl={"depth": 2})
    assert counting.texts == [] and site.bodies() == [] and site.count(304) == 4  # /a/deep reached via /a's links
    assert again.documents_skipped == 4

    # The same start page ingested as a single page is its own set of validators (a crawl records links).
    single = await ingest_inputs(store, counting, start, kb=kb, settings=settings)
    assert single.documents == 1 and site.bodies() == ["/"]


def test_cli_ingest_again_downloads_nothing(cli_env: dict[str, str], site: Site, tmp_path: Path, kb: str) -> None:
    site.put("/", page("Home", "Kestrel keeps herons.", ["/a"]))
    site.put("/a", page("A", "Herons nest in reeds."))
    sitemap(site, {"/a": "2026-01-01"})
    env = {**cli_env, "INGEST_ALLOWED_HOSTS": "127.0.0.1", "CRAWL_DELAY_SECONDS": "0"}
    for args in ((f"{site.base}/", "--crawl"), (f"{site.base}/sitemap.xml",)):
        first = run(env, "ingest", "--kb", kb, *args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        site.log.clear()
        again = run(env, "ingest", "--kb", kb, *args, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert site.bodies() == ([] if "--crawl" in args else ["/sitemap.xml"]), site.log
        skipped = 2 if "--crawl" in args else 1
        assert f"{skipped} not downloaded" in again.stdout and "0 added" in again.stdout


def test_admin_urls_crawl(admin: RunningServer, site: Site, kb: str) -> None:  # noqa: F811
    site.put("/", page("Home", "Start.", ["/a", "/b", "/c"]))
    for name in "abc":
        site.put(f"/{name}", page(name.upper(), f"Page {name} mentions owls."))
    body = {"urls": [f"{site.base}/"], "crawl": True, "depth": 1, "max_pages": 3}
    job = ingested(admin, call(admin, "POST", f"/admin/kbs/{kb}/urls", json=body))
    assert job["state"] == "done" and job["summary"]["documents"] == 3, job
    assert site.bodies() == ["/", "/a", "/b"]  # the page cap

    site.log.clear()
    again = ingested(admin, call(admin, "POST", f"/admin/kbs/{kb}/urls", json=body))
    assert again["summary"]["documents_skipped"] == 3 and again["summary"]["added"] == 0, again
    assert site.bodies() == [] and site.count(304) == 3

    for bad, message in [
        ({"urls": [f"{site.base}/", f"{site.base}/a"], "crawl": True}, "crawl takes one start URL"),
        ({"urls": [f"{site.base}/"], "depth": 2}, "only for a crawl"),
        ({"urls": [f"{site.base}/"], "crawl": True, "max_pages": 0}, "--max-pages 0"),
        ({"urls": [f"{site.base}/"], "crawl": True, "prefix": "docs"}, "--prefix 'docs'"),
    ]:
        refused = call(admin, "POST", f"/admin/kbs/{kb}/urls", json=bad)
        assert refused.status_code == 400 and message in refused.json()["detail"], refused.text
