"""`kb reembed`: a KB re-embedded with a second embedder (the deterministic OpenAI-compatible fake) on the real
Weaviate, switched atomically with an alias; searches before, during and after; failures keep the old KB."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from weaviate.classes.config import Configure, VectorDistances

from core.config import Settings
from core.embed import Embedder, create_embedder
from core.errors import EmbedderMismatch, EmbedError, KBNotFound, SwitchboardError
from core.ingest.pipeline import Progress, doc_id_for, ingest
from core.ingest.reembed import reembed
from core.kb import EMBED_TEXT, LEGACY_EMBED_TEXT, MARKDOWN_EMBED_TEXT, KBMeta, collection_name
from core.store.client import Store, open_store
from core.store.local import LocalWeaviate
from core.store.schema import PROPERTIES
from core.store.search import SearchOptions, retrieve
from tests.fakes.openai_server import DIM, FakeOpenAI
from tests.support.embedders import Wrapped
from tests.test_cli import one_line_error, run
from tests.test_ingest import CountingEmbedder

DOCS = {
    "lighthouse.md": "# Lighthouse\n\nThe lighthouse keeper trims the lamp wick every evening.",
    "orchard.md": "# Orchard\n\nApples ripen in the orchard in autumn.",
    "harbour.md": "# Harbour\n\nFerries leave the harbour at dawn.",
    "bakery.md": "# Bakery\n\nThe baker kneads sourdough before sunrise.",
    "forge.md": "# Forge\n\nThe smith hammers horseshoes on the anvil.",
}


class Quiet:
    def stage(self, description: str, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass


QUIET: Progress = Quiet()


@dataclass
class Gated(Wrapped):
    """The second embedder, pausing its first batch until released and failing from batch `fail_at` on."""

    fail_at: int | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    batches: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.batches += 1
        if self.fail_at is not None and self.batches >= self.fail_at:
            raise EmbedError("embedding endpoint failed: scripted")
        self.entered.set()
        assert self.release.wait(30), "never released"
        return self.inner.embed_documents(texts)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def remote_settings(settings: Settings, fake: FakeOpenAI) -> Settings:
    # Pages of two chunks, so a KB of five documents is copied in several batches.
    return settings.model_copy(
        update={
            "embed_provider": "openai",
            "embed_model": "fake-embed-1",
            "embed_base_url": fake.base_url,
            "embed_api_key": SecretStr("sk-test"),
            "embed_batch_size": 1,
        }
    )


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def names(settings: Settings) -> tuple[set[str], dict[str, str]]:
    """The server's collections and aliases (alias → collection), read over its REST API."""
    local = LocalWeaviate.from_settings(settings)
    headers = {"Authorization": f"Bearer {local.api_key}"}
    schema = httpx.get(f"{local.url}/v1/schema", headers=headers, timeout=5).json()
    aliases = httpx.get(f"{local.url}/v1/aliases", headers=headers, timeout=5).json()
    return {c["class"] for c in schema["classes"]}, {a["alias"]: a["class"] for a in aliases["aliases"]}


def of_kb(settings: Settings, kb: str) -> tuple[set[str], str | None]:
    collections, aliases = names(settings)
    return {c for c in collections if c.startswith(collection_name(kb))}, aliases.get(collection_name(kb))


async def top_source(store: Store, embedder: Embedder, kb: str, query: str) -> str:
    hits = await retrieve(store, embedder, kb, query, SearchOptions(top_k=1, alpha=1.0))
    return hits[0].source.rsplit("/", 1)[-1]


async def test_reembed_switches_atomically_and_search_works_before_during_and_after(
    settings: Settings, remote_settings: Settings, store: Store, embedder: Embedder, kb: str, corpus: Path
) -> None:
    await ingest(store, embedder, [str(corpus)], kb=kb, settings=settings)
    # A new KB is a versioned collection behind an alias, so that this first reembed is already atomic.
    assert of_kb(settings, kb) == ({f"{collection_name(kb)}_V1"}, f"{collection_name(kb)}_V1")
    assert await top_source(store, embedder, kb, "apples ripen in autumn") == "orchard.md"

    gated = Gated(create_embedder(remote_settings))
    async with open_store(settings) as builder:
        task = asyncio.create_task(reembed(builder, gated, kb=kb, settings=remote_settings, progress=QUIET))
        assert await asyncio.to_thread(gated.entered.wait, 30)
        # Mid-build: the new collection exists, but serving (and listing) is still the old one.
        assert of_kb(settings, kb) == (
            {f"{collection_name(kb)}_V1", f"{collection_name(kb)}_V2"},
            f"{collection_name(kb)}_V1",
        )
        assert await top_source(store, embedder, kb, "ferries at dawn") == "harbour.md"
        listed = {s.name: s for s in await store.list_kbs()}
        assert listed[kb].meta.embed_model == embedder.name and listed[kb].chunks == len(DOCS)
        assert not any(name.endswith("_V2") for name in listed)
        gated.release.set()
        report = await task

    assert report.chunks == len(DOCS) and report.after == KBMeta(
        embed_model="fake-embed-1", embed_dim=DIM, chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap
    )
    assert report.before.embed_model == embedder.name
    assert of_kb(settings, kb) == ({f"{collection_name(kb)}_V2"}, f"{collection_name(kb)}_V2")  # old one dropped

    remote = create_embedder(remote_settings)
    async with open_store(settings) as restarted:  # a process started with the new EMBED_MODEL
        assert await top_source(restarted, remote, kb, "the lighthouse keeper lamp wick") == "lighthouse.md"
        with pytest.raises(EmbedderMismatch, match="built with fake-embed-1"):
            await retrieve(restarted, embedder, kb, "apples", SearchOptions(top_k=1, alpha=0.5))
        listed = {s.name: s for s in await restarted.list_kbs()}
        assert listed[kb].meta == report.after and (listed[kb].documents, listed[kb].chunks) == (5, 5)

        # Ingest, list, delete a document: all through the alias.
        (corpus / "mill.md").write_text("# Mill\n\nThe miller grinds wheat into flour.")
        added = await ingest(restarted, remote, [str(corpus)], kb=kb, settings=remote_settings)
        assert (added.added, added.unchanged) == (1, 5)
        assert await top_source(restarted, remote, kb, "miller grinds wheat flour") == "mill.md"
        documents = await restarted.list_documents(kb)
        assert len(documents) == 6
        assert await restarted.delete_document(kb, doc_id_for(str(corpus / "bakery.md"))) is not None
        assert await restarted.counts(kb) == (5, 5)

        # Deleting the KB removes its alias and its collections.
        await restarted.delete_kb(kb)
        assert of_kb(settings, kb) == (set(), None)
        with pytest.raises(KBNotFound):
            await restarted.kb_meta(kb)


@pytest.mark.parametrize("how", ["embedder error", "cancelled"])
async def test_a_failure_midway_keeps_the_old_kb(
    how: str, settings: Settings, remote_settings: Settings, store: Store, embedder: Embedder, kb: str, corpus: Path
) -> None:
    await ingest(store, embedder, [str(corpus)], kb=kb, settings=settings)
    gated = Gated(create_embedder(remote_settings), fail_at=2 if how == "embedder error" else None)
    task = asyncio.create_task(reembed(store, gated, kb=kb, settings=remote_settings, progress=QUIET))
    if how == "embedder error":
        gated.release.set()
        with pytest.raises(EmbedError, match="scripted"):
            await task
    else:  # what Ctrl-C does to the CLI's asyncio.run
        assert await asyncio.to_thread(gated.entered.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gated.release.set()

    assert of_kb(settings, kb) == ({f"{collection_name(kb)}_V1"}, f"{collection_name(kb)}_V1")
    assert (await store.kb_meta(kb)).embed_model == embedder.name
    assert await top_source(store, embedder, kb, "smith hammers horseshoes") == "forge.md"
    await store.delete_kb(kb)


async def test_a_kb_from_before_aliases_is_migrated_on_its_first_reembed(
    settings: Settings, remote_settings: Settings, store: Store, embedder: Embedder, kb: str, corpus: Path
) -> None:
    meta = KBMeta(
        embed_model=embedder.name,
        embed_dim=embedder.dim,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
    )
    # A KB as earlier versions created it: a plain collection under the KB's public name.
    await store._client.collections.create(
        collection_name(kb),
        description=meta.dumps(),
        properties=PROPERTIES,
        vector_config=Configure.Vectors.self_provided(
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
        ),
    )
    await ingest(store, embedder, [str(corpus)], kb=kb, settings=settings)
    assert of_kb(settings, kb) == ({collection_name(kb)}, None)
    assert [s.chunks for s in await store.list_kbs() if s.name == kb] == [5]

    report = await reembed(store, create_embedder(remote_settings), kb=kb, settings=remote_settings, progress=QUIET)
    assert report.chunks == 5
    assert of_kb(settings, kb) == ({f"{collection_name(kb)}_V1"}, f"{collection_name(kb)}_V1")
    remote = create_embedder(remote_settings)
    assert await top_source(store, remote, kb, "baker kneads sourdough") == "bakery.md"
    assert [s.meta.embed_model for s in await store.list_kbs() if s.name == kb] == ["fake-embed-1"]
    await store.delete_kb(kb)
    assert of_kb(settings, kb) == (set(), None)


def test_cli_reembed_then_list_and_a_failing_endpoint(
    cli_env: dict[str, str], fake: FakeOpenAI, tmp_path: Path, kb: str, corpus: Path
) -> None:
    assert run(cli_env, "ingest", str(corpus), "--kb", kb, cwd=tmp_path).returncode == 0
    model = ["--embed-model", "fake-embed-1", "--embed-provider", "openai"]

    # An endpoint that cannot be reached: one line, and the KB is as it was.
    failed = run(cli_env, "kb", "reembed", kb, *model, "--embed-base-url", "http://127.0.0.1:9/v1", cwd=tmp_path)
    one_line_error(failed, "embedding endpoint failed")
    listed = {k["name"]: k for k in json.loads(run(cli_env, "kb", "list", "--json", cwd=tmp_path).stdout)}
    assert listed[kb]["embed_model"] != "fake-embed-1"

    done = run(cli_env, "kb", "reembed", kb, *model, "--embed-base-url", fake.base_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert f"{kb}: 5 chunks re-embedded with fake-embed-1 ({DIM} dims" in said
    assert f"set EMBED_MODEL=fake-embed-1 EMBED_PROVIDER=openai EMBED_BASE_URL={fake.base_url}" in said
    listed = {k["name"]: k for k in json.loads(run(cli_env, "kb", "list", "--json", cwd=tmp_path).stdout)}
    assert (listed[kb]["embed_model"], listed[kb]["embed_dim"], listed[kb]["chunks"]) == ("fake-embed-1", DIM, 5)
    wide = {**cli_env, "COLUMNS": "200"}  # other tests' KBs may share the table: no folding
    assert "fake-embed-1 (64)" in run(wide, "kb", "list", cwd=tmp_path).stdout
    assert listed[kb]["embed_text"] == EMBED_TEXT

    served = {**cli_env, "EMBED_MODEL": "fake-embed-1", "EMBED_PROVIDER": "openai", "EMBED_BASE_URL": fake.base_url}
    found = run(served, "search", "ferries harbour dawn", "--kb", kb, "-k", "1", "--json", cwd=tmp_path)
    assert json.loads(found.stdout)["results"][0]["source"].endswith("harbour.md"), found.stderr
    assert run(cli_env, "kb", "delete", kb, "--yes", cwd=tmp_path).returncode == 0


BODY = "# Kettle\n\n## Descaling\n\nUse [citric acid](https://x.example/acid) once a month."


@pytest.mark.parametrize(
    ("built_with", "first_text"),
    [
        (None, f"Kettle\nDescaling\n{BODY}"),  # a KB from before #17 records nothing: title, trail, text
        (MARKDOWN_EMBED_TEXT, f"Descaling\n{BODY}"),  # one from before plain text: the Markdown as written
    ],
)
async def test_a_kb_keeps_the_way_its_vectors_were_made_until_a_reembed_moves_it_to_plain_text(
    settings: Settings,
    store: Store,
    embedder: Embedder,
    kb: str,
    tmp_path: Path,
    built_with: str | None,
    first_text: str,
) -> None:
    old = json.loads(
        KBMeta(embed_model=embedder.name, embed_dim=embedder.dim, chunk_size=1000, chunk_overlap=150).dumps()
    )
    del old["embed_text"]
    if built_with:
        old["embed_text"] = built_with
    await store._client.collections.create(
        collection_name(kb),
        description=json.dumps(old),
        properties=PROPERTIES,
        vector_config=Configure.Vectors.self_provided(
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
        ),
    )
    assert (await store.kb_meta(kb)).embed_text == (built_with or LEGACY_EMBED_TEXT)
    (tmp_path / "kettle.md").write_text(BODY + "\n")
    recording = CountingEmbedder(embedder)
    await ingest(store, recording, [str(tmp_path)], kb=kb, settings=settings)
    assert recording.texts == [first_text]  # as the KB's vectors were made

    recording.texts.clear()
    report = await reembed(store, recording, kb=kb, settings=settings, progress=QUIET)
    assert (report.before.embed_text, report.after.embed_text) == (built_with or LEGACY_EMBED_TEXT, EMBED_TEXT)
    # No title's repetition, no link target: the words a reader sees.
    assert recording.texts == ["Descaling\nKettle\nDescaling\nUse citric acid once a month."]
    assert (await store.kb_meta(kb)).embed_text == EMBED_TEXT
    (tmp_path / "mug.md").write_text("# Mug\n\nHolds tea.\n")
    recording.texts.clear()
    await ingest(store, recording, [str(tmp_path)], kb=kb, settings=settings)
    assert recording.texts == ["Mug\nHolds tea."]
    await store.delete_kb(kb)


@pytest.mark.parametrize(
    ("description", "said"),
    [
        (
            '{"embed_model": "m", "embed_dim": 3, "chunk_size": 1000, "chunk_overlap": 150, "embed_text": "tokens v9"}',
            "built by a newer Switchboard (its vectors are of 'tokens v9'): upgrade to use it",
        ),
        ('{"embed_model": "m"}', "not created by Switchboard"),
        ("a collection someone else made", "not created by Switchboard"),
        (None, "not created by Switchboard"),
    ],
)
def test_kb_metadata_it_cannot_read_says_why(description: str | None, said: str) -> None:
    with pytest.raises(SwitchboardError, match=re.escape(said)):
        KBMeta.loads(description)
