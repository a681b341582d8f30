"""Ingestion against the real Weaviate and the real local embedder."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from core.config import Settings
from core.embed import Embedder
from core.errors import EmbedderMismatch, IngestError, UnsupportedSource
from core.ingest.pipeline import chunks_for, doc_id_for, ingest
from core.ingest.sources import RawDoc
from core.kb import KBMeta, collection_name
from core.store import client as store_client
from core.store.client import Store, open_store
from core.store.schema import chunk_uuid
from core.store.search import SearchOptions, retrieve
from tests.conftest import QuietHandler, loopback_allowed
from tests.support.embedders import Wrapped
from tests.test_extract import make_docx, make_pdf


@dataclass
class CountingEmbedder(Wrapped):
    """The real embedder, counting how many texts it was asked to embed."""

    texts: list[str] = field(default_factory=list)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return self.inner.embed_documents(texts)


def write_every_type(root: Path) -> None:
    (root / "guides").mkdir(parents=True)
    (root / "guides" / "install.md").write_text("# Install\n\nRun `kestrel init` to create kestrel.toml.\n")
    (root / "notes.txt").write_text("Workers poll the queue every 500 milliseconds.\n")
    (root / "ops.rst").write_text("Operations\n==========\n\nBackups run nightly at 02:00.\n")
    (root / "page.html").write_text(
        "<html><title>Web</title><body><main><h1>Web</h1><p>Dashboard on port 8470.</p></main></body></html>"
    )
    (root / "manual.pdf").write_bytes(make_pdf(["The emergency stop is the red lever."]))
    (root / "handbook.docx").write_bytes(make_docx())
    (root / "image.png").write_bytes(b"\x89PNG not ingested")  # unsupported types in a folder are skipped
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.md").write_text("# hidden, never ingested\n")


async def stored_set(store: Store, kb: str) -> set[tuple[str, int, str]]:
    index = await store.stored_chunks(kb)
    return {(doc, c.position, c.content_hash) for doc, chunks in index.items() for c in chunks.values()}


def expected_set(paths: list[Path], settings: Settings, origin: Path) -> set[tuple[str, int, str]]:
    out = set()
    for path in paths:
        doc = RawDoc(source=str(path), origin=str(origin), suffix=path.suffix, data=path.read_bytes(), explicit=False)
        out |= {(c.doc_id, c.position, c.content_hash) for c in chunks_for(doc, settings)}
    return out


async def test_every_file_type_then_incremental_reingest(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    write_every_type(tmp_path)
    counting = CountingEmbedder(embedder)

    first = await ingest(store, counting, [str(tmp_path)], kb=kb, settings=settings)
    assert first.documents == 6 and first.failures == []
    assert first.added == len(counting.texts) > 0
    sources = {
        s.source.rsplit("/", 1)[-1] for s in await store.search(kb, "x", embedder.embed_query("x"), alpha=0.5, limit=50)
    }
    assert sources == {"install.md", "notes.txt", "ops.rst", "page.html", "manual.pdf", "handbook.docx"}

    counting.texts.clear()
    again = await ingest(store, counting, [str(tmp_path)], kb=kb, settings=settings)
    assert counting.texts == []  # unchanged documents cost no embedding work
    assert (again.added, again.updated, again.deleted, again.documents_unchanged) == (0, 0, 0, 6)

    # A changed document: only its chunks are embedded, the old chunks are replaced.
    (tmp_path / "notes.txt").write_text("Workers poll the queue every 250 milliseconds.\n")
    changed = await ingest(store, counting, [str(tmp_path)], kb=kb, settings=settings)
    assert (changed.added, changed.updated, changed.documents_unchanged) == (0, 1, 5)
    assert counting.texts == ["Workers poll the queue every 250 milliseconds."]  # no heading: no section trail
    files = [p for p in tmp_path.rglob("*") if p.is_file() and ".git" not in p.parts and p.suffix != ".png"]
    assert await stored_set(store, kb) == expected_set(files, settings, tmp_path)


async def test_shrinking_document_deletes_its_extra_chunks(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    doc = tmp_path / "long.md"
    doc.write_text("# Long\n\n" + "\n\n".join(f"## Part {i}\n\nParagraph {i} about topic {i}." for i in range(8)))
    await ingest(store, embedder, [str(doc)], kb=kb, settings=settings)
    doc.write_text("# Long\n\n## Part 0\n\nOnly one part is left.\n")
    report = await ingest(store, embedder, [str(doc)], kb=kb, settings=settings)
    assert report.deleted == 7
    assert await stored_set(store, kb) == expected_set([doc], settings, doc)


async def test_prune_removes_documents_gone_from_the_source(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    docs, other = tmp_path / "docs", tmp_path / "other"
    docs.mkdir()
    other.mkdir()
    for name in ("a", "b", "c"):
        (docs / f"{name}.md").write_text(f"# {name}\n\nDocument {name}.\n")
    (other / "keep.md").write_text("# keep\n\nFrom another source.\n")
    await ingest(store, embedder, [str(docs), str(other)], kb=kb, settings=settings)
    (docs / "b.md").unlink()

    without_prune = await ingest(store, embedder, [str(docs)], kb=kb, settings=settings)
    assert without_prune.deleted == 0
    pruned = await ingest(store, embedder, [str(docs)], kb=kb, settings=settings, prune=True)
    assert (pruned.documents_pruned, pruned.deleted) == (1, 1)
    remaining = {
        s.source.rsplit("/", 1)[-1]
        for s in await store.search(kb, "document", embedder.embed_query("document"), alpha=0.5, limit=20)
    }
    assert remaining == {"a.md", "c.md", "keep.md"}  # other sources are untouched by --prune of docs/


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "site"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: QuietHandler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


async def test_urls_and_sitemaps(
    site: tuple[str, Path], store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    base, root = site
    (root / "one.html").write_text(
        "<html><title>One</title><body><h1>One</h1><p>Page one mentions falcons.</p></body></html>"
    )
    (root / "two.md").write_text("# Two\n\nPage two mentions herons.\n")
    (root / "guide.pdf").write_bytes(make_pdf(["Page three mentions owls."]))
    (root / "sitemap.xml").write_text(
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{base}/one.html</loc></url><url><loc>{base}/two.md</loc></url>"
        f"<url><loc>{base}/guide.pdf</loc></url><url><loc>{base}/missing.html</loc></url></urlset>"
    )
    (root / "index.xml").write_text(
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/sitemap.xml</loc></sitemap></sitemapindex>"
    )
    settings = loopback_allowed(settings)
    report = await ingest(store, embedder, [f"{base}/index.xml"], kb=kb, settings=settings)
    assert report.documents == 3
    assert report.failures == [(f"{base}/missing.html", f"{base}/missing.html: HTTP 404")]
    hits = await store.search(kb, "herons", embedder.embed_query("herons"), alpha=0.5, limit=1)
    assert hits[0].source == f"{base}/two.md" and hits[0].title == "Two"

    single = await ingest(store, embedder, [f"{base}/one.html"], kb=kb, settings=settings)
    assert single.documents == 1 and single.documents_unchanged == 0  # same page, new origin: re-tagged


async def test_a_redirected_url_is_stored_under_its_final_url(
    site: tuple[str, Path], store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    base, root = site
    (root / "manual").mkdir()
    (root / "manual" / "index.html").write_text(
        "<html><title>Manual</title><body><p>Kites need wind.</p></body></html>"
    )
    # The server answers /manual with a 301 to /manual/.
    await ingest(store, embedder, [f"{base}/manual"], kb=kb, settings=loopback_allowed(settings))
    hits = await store.search(kb, "kites", embedder.embed_query("kites"), alpha=0.5, limit=1)
    assert (hits[0].source, hits[0].title) == (f"{base}/manual/", "Manual")


async def test_an_internal_url_is_refused_before_anything_is_written(
    site: tuple[str, Path], store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    base, root = site
    (root / "secret.md").write_text("# Secret\n\nInternal only.\n")
    with pytest.raises(IngestError, match=f"^{base}/secret.md: refused: internal address .*INGEST_ALLOWED_HOSTS"):
        await ingest(store, embedder, [f"{base}/secret.md"], kb=kb, settings=settings)
    assert kb not in {s.name for s in await store.list_kbs()}


async def test_bad_inputs_write_nothing(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    good = tmp_path / "good.md"
    good.write_text("# Good\n\nFine.\n")
    (tmp_path / "tool.exe").write_bytes(b"MZ")
    (tmp_path / "broken.pdf").write_bytes(b"not a pdf")
    cases: list[tuple[list[str], type[Exception], str]] = [
        ([str(good), str(tmp_path / "tool.exe")], UnsupportedSource, "unsupported file type '.exe'"),
        ([str(good), str(tmp_path / "nope.md")], IngestError, "no such file or directory"),
        ([str(good), str(tmp_path / "broken.pdf")], IngestError, "unreadable PDF"),
        ([str(good), "ftp://example.org/x.md"], UnsupportedSource, "only http"),
        ([str(good), "http://127.0.0.1:9/nothing.md"], IngestError, "cannot fetch"),
    ]
    for inputs, error, message in cases:
        with pytest.raises(error, match=message):
            await ingest(store, embedder, inputs, kb=kb, settings=loopback_allowed(settings))
    assert kb not in {s.name for s in await store.list_kbs()}


async def test_unreadable_file_inside_a_folder_is_reported_not_fatal(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    (tmp_path / "good.md").write_text("# Good\n\nFine.\n")
    (tmp_path / "broken.docx").write_bytes(b"not a docx")
    report = await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    assert report.documents == 1
    assert [(Path(s).name, "unreadable" in r) for s, r in report.failures] == [("broken.docx", True)]


async def test_other_embedder_is_refused(
    store: Store, embedder: Embedder, settings: Settings, kb: str, tmp_path: Path
) -> None:
    (tmp_path / "a.md").write_text("# A\n\nText.\n")
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    other = KBMeta(embed_model="text-embedding-3-small", embed_dim=1536, chunk_size=1000, chunk_overlap=150)
    with pytest.raises(EmbedderMismatch, match="was built with sentence-transformers/all-MiniLM-L6-v2"):
        await store.ensure_kb(kb, other)
    with pytest.raises(EmbedderMismatch):
        await store.check_kb(kb, "text-embedding-3-small", 1536)


def test_chunk_ids_are_stable() -> None:
    assert chunk_uuid("doc", 3) == chunk_uuid("doc", 3) != chunk_uuid("doc", 4)


async def test_counts_every_document_however_many(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    for i in range(120):  # more than a grouped aggregate returns by default
        (tmp_path / f"note-{i:03}.md").write_text(f"# Note {i}\n\nNote number {i}.\n")
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    assert await store.counts(kb) == (120, 120)


async def test_each_chunk_knows_its_documents_length_and_a_growing_document_is_recounted_not_reembedded(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    doc, short = tmp_path / "long.md", tmp_path / "short.md"
    parts = [f"## Part {i}\n\nParagraph {i} about topic {i}." for i in range(3)]
    doc.write_text("# Long\n\n" + "\n\n".join(parts))
    short.write_text("# Short\n\nOne paragraph.\n")
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    assert {c.doc_chunks for c in (await store.stored_chunks(kb))[doc_id_for(str(doc))].values()} == {3}

    counting = CountingEmbedder(embedder)
    doc.write_text("# Long\n\n" + "\n\n".join([*parts, "## Part 3\n\nA fourth part."]))
    report = await ingest(store, counting, [str(tmp_path)], kb=kb, settings=settings)
    assert (report.added, report.updated, report.documents_unchanged) == (1, 0, 1)
    assert len(counting.texts) == 1  # only the new part is embedded; the other three get the new count in place
    stored = await store.stored_chunks(kb)
    assert [c.doc_chunks for c in stored[doc_id_for(str(doc))].values()] == [4, 4, 4, 4]
    assert [c.doc_chunks for c in stored[doc_id_for(str(short))].values()] == [1]
    found = await store.search(kb, "topic", embedder.embed_query("topic"), alpha=0.5, limit=10)
    assert {(s.source.rsplit("/", 1)[-1], s.doc_chunks) for s in found} == {("long.md", 4), ("short.md", 1)}


async def test_a_kb_built_before_chunk_counts_gets_them_on_the_next_ingest_without_reembedding(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc, other = tmp_path / "guide.md", tmp_path / "other.md"
    doc.write_text("# Guide\n\n## Install\n\nRun the installer.\n\n## Upgrade\n\nRun it again.\n")
    other.write_text("# Other\n\n## One\n\nFirst.\n\n## Two\n\nSecond.\n\n## Three\n\nThird.\n")
    chunks = [
        c
        for path in (doc, other)
        for c in chunks_for(
            RawDoc(source=str(path), origin=str(path), suffix=".md", data=path.read_bytes(), explicit=True), settings
        )
    ]
    # The KB as an older version built it: a collection without the property, chunks without the count.
    monkeypatch.setattr(store_client, "PROPERTIES", [p for p in store_client.PROPERTIES if p.name != "doc_chunks"])
    await store.ensure_kb(
        kb, KBMeta(embed_model=embedder.name, embed_dim=embedder.dim, chunk_size=1000, chunk_overlap=150)
    )
    old = [
        (chunk_uuid(c.doc_id, c.position), {k: v for k, v in asdict(c).items() if k != "doc_chunks"}) for c in chunks
    ]
    await store.copy_chunks(collection_name(kb), old, embedder.embed_documents([c.text for c in chunks]))
    monkeypatch.undo()

    async with open_store(settings) as upgraded:  # this version, in a new process: it adds the property on first use
        found = await retrieve(upgraded, embedder, kb, "installer", SearchOptions(top_k=5, alpha=0.5, doc_cap=0))
        assert {s.doc_chunks for s in found} == {1}  # unknown counts: no length penalty
        assert {c.doc_chunks for cs in (await upgraded.stored_chunks(kb)).values() for c in cs.values()} == {None}

        # An ingest of one document (as a sync that finds one page changed): every document gets its count, the
        # other from what is stored; nothing is embedded.
        counting = CountingEmbedder(embedder)
        report = await ingest(upgraded, counting, [str(doc)], kb=kb, settings=settings)
        assert counting.texts == [] and report.documents_unchanged == 1
        stored = await upgraded.stored_chunks(kb)
        assert {c.doc_chunks for c in stored[doc_id_for(str(doc))].values()} == {2}
        assert {c.doc_chunks for c in stored[doc_id_for(str(other))].values()} == {3}
        assert await upgraded.fill_doc_chunks(kb) == 0  # once filled, one aggregate and nothing to do
