"""The site crawler and web-source change detection, against a loopback site (tests.support.site: ETag,
Last-Modified, 304s, every request logged) and the real Weaviate and embedder: depth, page cap, robots.txt,
path prefix, canonical and variant de-duplication, PDF/DOCX links, an internal address refused per page,
unchanged pages answered 304 (no body, no embedding), a changed page alone re-embedded, sitemap <lastmod>
skips without a request, prune, and bad options refused with one line by the CLI and a 400 by the admin API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError
from core.ingest.crawl import CrawlOptions, url_key
from core.ingest.registry import Registry, Source
from core.ingest.sync import Synced, sync_source
from core.store.client import Store
from tests.conftest import loopback_allowed
from tests.servers import RunningServer
from tests.support.site import Site, page, serve_site
from tests.test_admin_api import admin, call  # noqa: F401 - `admin` is a fixture
from tests.test_cli import one_line_error, run
from tests.test_extract import make_docx, make_pdf
from tests.test_ingest import CountingEmbedder

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture
def site() -> Iterator[Site]:
    with serve_site(Site()) as running:
        yield running


def docs_site(site: Site) -> None:
    """/docs/ and what it links to: variants of /docs/a, pages outside the prefix or robots-disallowed, a page
    whose canonical URL is another, a PDF, a DOCX, an image, a redirect to an internal address, deeper pages."""
    hop = "http://169.254.169.254/latest/meta-data/"  # cloud metadata: not in INGEST_ALLOWED_HOSTS
    site.put("/robots.txt", "User-agent: *\nDisallow: /docs/private/\n", "text/plain")
    links = [
        "/docs/a", "/docs/a/", "/docs/a#install", "a?utm_source=news", "/docs/b?x=1&y=2", "/docs/b?y=2&x=1",
        "/blog/post", "/docs/private/keys", "https://elsewhere.example/docs/x", "/docs/dup", "/docs/guide.pdf",
        "/docs/ops.docx", "/docs/logo.png", "/docs/hop", "mailto:team@example.org",
    ]  # fmt: skip
    site.put("/docs/", page("Docs home", "Welcome to the Kestrel documentation.", links))
    site.put("/docs/a", page("Install", "Run kestrel init to create kestrel.toml.", ["/docs/deep1"]))
    site.put("/docs/b?x=1&y=2", page("Queue", "Workers poll the queue every 500 milliseconds."))
    site.put(
        "/docs/dup", page("Queue copy", "Same as the queue page.", head='<link rel="canonical" href="/docs/b?x=1&y=2">')
    )
    site.put("/docs/deep1", page("Deep one", "Tuning the flux capacitor.", ["/docs/deep2"]))
    site.put("/docs/deep2", page("Deep two", "Too deep to be read."))
    site.put("/blog/post", page("Blog", "Outside the prefix."))
    site.put("/docs/private/keys", page("Keys", "Disallowed by robots.txt."))
    site.put("/docs/guide.pdf", make_pdf(["The field guide mentions owls."]), PDF)
    site.put("/docs/ops.docx", make_docx(), DOCX)
    site.put("/docs/logo.png", b"\x89PNG\r\n", "image/png")
    site.redirects["/docs/hop"] = hop


async def add_crawl(registry: Registry, kb: str, target: str, **options: object) -> Source:
    return await registry.add(kb=kb, target=target, sitemap=False, prune=True, every=None, crawl=True, options=options)


async def stored_sources(store: Store, kb: str) -> set[str]:
    return {c.source for chunks in (await store.stored_chunks(kb)).values() for c in chunks.values()}


async def test_crawl_then_unchanged_then_one_change(
    site: Site, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    docs_site(site)
    settings = loopback_allowed(settings).model_copy(update={"crawl_delay_seconds": 0})
    registry = Registry(tmp_path / "sources.sqlite3")
    source = await add_crawl(registry, kb, f"{site.base}/docs/", depth=2, prefix="/docs/")
    counting = CountingEmbedder(embedder)

    async def sync() -> Synced:
        site.log.clear()
        counting.texts.clear()
        return await sync_source(registry, store, counting, source, settings=settings)

    first = await sync()
    base = site.base
    expected = {f"{base}/docs/", f"{base}/docs/a", f"{base}/docs/b?x=1&y=2", f"{base}/docs/deep1"}
    expected |= {f"{base}/docs/guide.pdf", f"{base}/docs/ops.docx"}
    assert await stored_sources(store, kb) == expected
    fetched = site.bodies()
    assert fetched.count("/docs/a") == 1 and fetched.count("/docs/b?x=1&y=2") == 1  # variants read once
    assert "/docs/a/" not in fetched and "/docs/b?y=2&x=1" not in fetched
    for never in ("/blog/post", "/docs/private/keys", "/docs/deep2", "/docs/logo.png"):
        assert never not in fetched  # outside the prefix, disallowed, too deep
    assert first.report is not None
    assert [(url, reason.split(": ", 1)[1]) for url, reason in first.report.failures] == [
        (
            f"{base}/docs/hop",
            "refused: internal address (to ingest from an internal host, add it to INGEST_ALLOWED_HOSTS)",
        )
    ]
    assert first.run.documents == 6 and first.run.documents_skipped == 0 and "refused" in (first.run.error or "")
    hits = await store.search(kb, "owls", embedder.embed_query("owls field guide"), alpha=0.5, limit=1)
    assert hits[0].source == f"{base}/docs/guide.pdf"

    again = await sync()
    assert counting.texts == []  # nothing changed: nothing embedded
    assert site.bodies() == [] and site.count(304) == 7  # every page asked conditionally (and /docs/dup), no body
    assert (again.run.documents, again.run.documents_unchanged, again.run.documents_skipped) == (6, 6, 6)
    assert again.run.documents_pruned == 0 and await stored_sources(store, kb) == expected

    site.put("/docs/deep1", page("Deep one", "Tuning the flux capacitor takes 88 miles per hour."))
    del site.pages["/docs/guide.pdf"]  # 404: gone, so pruned (a timeout or a 5xx would keep it)
    changed = await sync()
    assert site.bodies() == ["/docs/deep1"]
    assert len(counting.texts) == 1 and "88 miles per hour" in counting.texts[0]  # only the changed page
    assert (changed.run.updated, changed.run.documents_skipped, changed.run.documents_pruned) == (1, 4, 1)
    assert await stored_sources(store, kb) == expected - {f"{base}/docs/guide.pdf"}


async def test_page_cap_and_depth_zero(
    site: Site, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    site.put("/", page("Home", "Start here.", [f"/p{i}" for i in range(10)]))
    for i in range(10):
        site.put(f"/p{i}", page(f"Page {i}", f"Page number {i} talks about topic {i}."))
    settings = loopback_allowed(settings).model_copy(update={"crawl_delay_seconds": 0})
    registry = Registry(tmp_path / "sources.sqlite3")
    capped = await add_crawl(registry, kb, f"{site.base}/", max_pages=4)
    synced = await sync_source(registry, store, embedder, capped, settings=settings)
    assert synced.run.documents == 4 and len(site.bodies()) == 4
    assert await stored_sources(store, kb) == {f"{site.base}/", *(f"{site.base}/p{i}" for i in range(3))}

    shallow = await add_crawl(registry, f"{kb}_0", f"{site.base}/p0", depth=0)
    assert (await sync_source(registry, store, embedder, shallow, settings=settings)).run.documents == 1


async def test_polite_delay_and_robots_crawl_delay(
    site: Site, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    site.put("/robots.txt", "User-agent: *\nCrawl-delay: 0.3\n", "text/plain")
    site.put("/", page("Home", "Start.", ["/a", "/b"]))
    site.put("/a", page("A", "Alpha."))
    site.put("/b", page("B", "Beta."))
    settings = loopback_allowed(settings).model_copy(update={"crawl_delay_seconds": 0})
    registry = Registry(tmp_path / "sources.sqlite3")
    source = await add_crawl(registry, kb, f"{site.base}/")
    synced = await sync_source(registry, store, embedder, source, settings=settings)
    assert synced.run.documents == 3
    assert synced.run.finished_at - synced.run.started_at >= 0.6  # three requests 0.3 s apart, as robots.txt asks

    site.put("/robots.txt", "User-agent: SwitchboardBot\nDisallow: /\n", "text/plain")
    refused = await sync_source(registry, store, embedder, source, settings=settings)
    assert refused.report is None and "robots.txt disallows it for 'SwitchboardBot" in (refused.run.error or "")


async def test_sitemap_lastmod_skips_without_a_request(
    site: Site, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    def sitemap(lastmods: dict[str, str]) -> None:
        entries = "".join(f"<url><loc>{site.base}{p}</loc><lastmod>{m}</lastmod></url>" for p, m in lastmods.items())
        site.put(
            "/sitemap.xml",
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>',
            "application/xml",
        )

    for name in ("one", "two", "three"):
        site.put(f"/{name}", page(name.title(), f"Page {name} mentions herons."))
    sitemap({"/one": "2026-01-01", "/two": "2026-01-01T10:00:00+00:00", "/three": "2026-01-01"})
    settings = loopback_allowed(settings)
    registry = Registry(tmp_path / "sources.sqlite3")
    source = await registry.add(kb=kb, target=f"{site.base}/sitemap.xml", sitemap=True, prune=True, every=None)
    counting = CountingEmbedder(embedder)
    first = await sync_source(registry, store, counting, source, settings=settings)
    assert first.run.documents == 3 and first.run.added == 3

    site.log.clear()
    counting.texts.clear()
    site.put("/two", page("Two", "Page two now mentions storks."))
    sitemap({"/one": "2026-01-01", "/two": "2026-02-01T10:00:00Z", "/three": "2025-12-31"})
    again = await sync_source(registry, store, counting, source, settings=settings)
    assert [p for p, _ in site.log] == ["/sitemap.xml", "/two"]  # the others not requested at all
    assert (again.run.documents_skipped, again.run.updated, again.run.documents_pruned) == (2, 1, 0)
    assert len(counting.texts) == 1 and "storks" in counting.texts[0]


async def test_a_failing_hub_or_sitemap_prunes_nothing(
    site: Site, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    """A page that fails once (503) keeps its document and its recorded links are followed, so the section below
    it stays; a sitemap index whose child sitemap fails prunes nothing (what that child lists is unknown)."""
    settings = loopback_allowed(settings).model_copy(update={"crawl_delay_seconds": 0})
    registry = Registry(tmp_path / "sources.sqlite3")
    site.put("/docs/", page("Docs home", "Welcome.", ["/docs/a", "/docs/b"]))
    site.put("/docs/a", page("A", "Alpha pages mention owls."))
    site.put("/docs/b", page("B", "Beta pages mention herons."))
    crawl = await add_crawl(registry, kb, f"{site.base}/docs/", depth=2)
    await sync_source(registry, store, embedder, crawl, settings=settings)
    pages = {f"{site.base}/docs/", f"{site.base}/docs/a", f"{site.base}/docs/b"}
    assert await stored_sources(store, kb) == pages
    site.failing.add("/docs/")
    hiccup = await sync_source(registry, store, embedder, crawl, settings=settings)
    assert hiccup.run.documents_pruned == 0 and "503" in (hiccup.run.error or "")
    assert await stored_sources(store, kb) == pages  # /docs/a and /docs/b were still reached, through its links

    sitemap_kb = f"{kb}_map"
    for name in ("one", "two"):
        entry = f"<url><loc>{site.base}/{name}</loc></url>"
        xml = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entry}</urlset>'
        site.put(f"/{name}.xml", xml, "application/xml")
        site.put(f"/{name}", page(name.title(), f"Page {name} mentions storks."))
    children = "".join(f"<sitemap><loc>{site.base}/{n}.xml</loc></sitemap>" for n in ("one", "two"))
    index = f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{children}</sitemapindex>'
    site.put("/index.xml", index, "application/xml")
    mapped = await registry.add(kb=sitemap_kb, target=f"{site.base}/index.xml", sitemap=True, prune=True, every=None)
    try:
        await sync_source(registry, store, embedder, mapped, settings=settings)
        assert await stored_sources(store, sitemap_kb) == {f"{site.base}/one", f"{site.base}/two"}
        site.failing.add("/two.xml")
        partial = await sync_source(registry, store, embedder, mapped, settings=settings)
        assert partial.run.documents_pruned == 0
        assert await stored_sources(store, sitemap_kb) == {f"{site.base}/one", f"{site.base}/two"}
    finally:
        await store.delete_kb(sitemap_kb)


async def test_meta_robots_and_x_robots_tag(
    site: Site, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    """noindex: not ingested (its links still followed), and removed once a stored page says it, even without
    prune; nofollow / none / rel=nofollow: links not followed; directives for another crawler ignored."""
    robots = '<meta name="robots" content="{}">'
    site.put("/", page("Home", "Start.", ["/hidden", "/leaf", "/header", "/other", "/ours", "/later"]))
    site.put("/hidden", page("Hidden", "Hub page.", ["/hidden/child"], head=robots.format("noindex, follow")))
    site.put("/hidden/child", page("Child", "Herons below a noindex hub."))
    site.put("/leaf", page("Leaf", "Storks.", ["/leaf/child"], head=robots.format("NoFollow")))
    site.put("/leaf/child", page("Leaf child", "Never reached."))
    said = {"X-Robots-Tag": "noindex, nofollow"}
    site.put("/header", page("Header", "Said in a header.", ["/header/child"]), headers=said)
    site.put("/header/child", page("Header child", "Never reached."))
    nofollow_link = '<a rel="nofollow" href="/login">log in</a>'
    other = '<meta name="googlebot" content="noindex">'
    site.put("/other", page("Other", f"Owls. {nofollow_link}", head=other), headers={"X-Robots-Tag": "bingbot: none"})
    site.put("/login", page("Login", "Never reached."))
    site.put("/ours", page("Ours", "Cranes.", ["/ours/child"], head='<meta name="SwitchboardBot" content="none">'))
    site.put("/ours/child", page("Ours child", "Never reached."))
    site.put("/later", page("Later", "Kingfishers."))
    settings = loopback_allowed(settings).model_copy(update={"crawl_delay_seconds": 0})
    registry = Registry(tmp_path / "sources.sqlite3")
    source = await registry.add(
        kb=kb, target=f"{site.base}/", sitemap=False, prune=False, every=None, crawl=True, options={"depth": 3}
    )
    first = await sync_source(registry, store, embedder, source, settings=settings)
    base = site.base
    assert await stored_sources(store, kb) == {
        f"{base}{p}" for p in ("/", "/hidden/child", "/leaf", "/other", "/later")
    }
    fetched = site.bodies()
    assert not {"/leaf/child", "/header/child", "/login", "/ours/child"} & set(fetched) and "/hidden/child" in fetched
    assert first.run.documents == 5 and first.run.error is None

    site.put("/later", page("Later", "Kingfishers, now hidden.", head=robots.format("noindex")))
    again = await sync_source(registry, store, embedder, source, settings=settings)
    assert f"{base}/later" not in await stored_sources(store, kb)  # removed without prune: the page asked
    assert again.run.documents_pruned == 1 and again.run.documents_skipped == 4

    site.put(
        "/map.xml",
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{base}/header</loc>'
        f"</url><url><loc>{base}/hidden</loc></url><url><loc>{base}/leaf</loc></url></urlset>",
        "application/xml",
    )
    mapped = await registry.add(kb=f"{kb}_map", target=f"{base}/map.xml", sitemap=True, prune=True, every=None)
    try:
        await sync_source(registry, store, embedder, mapped, settings=settings)
        assert await stored_sources(store, f"{kb}_map") == {f"{base}/leaf"}
    finally:
        await store.delete_kb(f"{kb}_map")


def test_url_key_folds_variants() -> None:
    keys = {
        url_key(u)
        for u in (
            "http://Docs.Example.org:80/a/",
            "http://docs.example.org/a#top",
            "http://docs.example.org/a?utm_source=x",
            "http://docs.example.org/a",
        )
    }
    assert keys == {"http://docs.example.org/a"}
    assert url_key("https://x.org/q?b=2&a=1") == url_key("https://x.org/q?a=1&b=2") != url_key("https://x.org/q?a=2")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": -1}, "--depth -1: expected a whole number from 0 to 20"),
        ({"depth": 21}, "--depth 21"),
        ({"max_pages": 0}, "--max-pages 0: expected a whole number from 1 to 100000"),
        ({"prefix": "docs"}, "--prefix 'docs': expected a URL path starting with /"),
    ],
)
def test_bad_crawl_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(IngestError, match=message.replace("(", r"\(")):
        CrawlOptions.parse(options)


def test_cli_source_add_crawl(cli_env: dict[str, str], tmp_path: Path, kb: str) -> None:
    url = "https://docs.example.org/docs/"
    one_line_error(
        run(cli_env, "source", "add", "--kb", kb, url, "--crawl", "--depth", "99", cwd=tmp_path), "--depth 99"
    )
    one_line_error(
        run(cli_env, "source", "add", "--kb", kb, url, "--crawl", "--max-pages", "0", cwd=tmp_path), "--max-pages 0"
    )
    one_line_error(
        run(cli_env, "source", "add", "--kb", kb, url, "--depth", "2", cwd=tmp_path), "only apply to a crawl"
    )
    one_line_error(run(cli_env, "source", "add", "--kb", kb, "docs", "--crawl", cwd=tmp_path), "needs an http(s) URL")
    added = run(
        cli_env, "source", "add", "--kb", kb, url, "--crawl", "--depth", "3", "--prefix", "/docs/", cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    assert f"crawl {url}" in added.stdout


def test_admin_api_crawl_source(admin: RunningServer, kb: str) -> None:  # noqa: F811
    body = {"target": "https://docs.example.org/", "crawl": True, "depth": 3, "max_pages": 50, "prefix": "/docs/"}
    added = call(admin, "POST", f"/admin/kbs/{kb}/sources", json=body)
    assert added.status_code == 201, added.text
    assert (added.json()["kind"], added.json()["options"]) == (
        "crawl",
        {"depth": 3, "max_pages": 50, "prefix": "/docs/"},
    )
    for bad, message in [
        ({"target": "https://docs.example.org/x", "crawl": True, "depth": 50}, "--depth 50"),
        ({"target": "https://docs.example.org/y", "depth": 2}, "only for a crawl"),
    ]:
        refused = call(admin, "POST", f"/admin/kbs/{kb}/sources", json=bad)
        assert refused.status_code == 400 and message in refused.json()["detail"], refused.text


def test_cli_ingest_crawl(cli_env: dict[str, str], site: Site, tmp_path: Path, kb: str) -> None:
    site.put("/", page("Home", "Kestrel keeps herons.", ["/a", "/b"]))
    site.put("/a", page("A", "Herons nest in reeds."))
    site.put("/b", page("B", "Herons eat fish."))
    env = {**cli_env, "INGEST_ALLOWED_HOSTS": "127.0.0.1", "CRAWL_DELAY_SECONDS": "0"}
    one_line_error(
        run(env, "ingest", "--kb", kb, f"{site.base}/", "--crawl", "--depth", "-1", cwd=tmp_path), "--depth -1"
    )
    one_line_error(run(env, "ingest", "--kb", kb, f"{site.base}/", "--max-pages", "3", cwd=tmp_path), "only apply")
    one_line_error(run(env, "ingest", "--kb", kb, f"{site.base}/", "x", "--crawl", cwd=tmp_path), "one start URL")
    done = run(env, "ingest", "--kb", kb, f"{site.base}/", "--crawl", "--max-pages", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{kb}: 2 documents" in done.stdout and site.bodies() == ["/", "/a"]
