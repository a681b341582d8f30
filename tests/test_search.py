"""Hybrid retrieval over a small known corpus, in the real Weaviate."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.config import Settings
from core.embed import Embedder
from core.errors import EmptyKB, KBNotFound
from core.ingest.pipeline import embedding_text, ingest
from core.kb import EMBED_TEXT, KBMeta
from core.store.client import Store
from core.store.search import SearchOptions, by_document, cap_per_document, keyword_query, retrieve
from core.types import Source

CORPUS = {
    "pets/cats.md": "# Cats\n\nCats are small carnivorous mammals that purr and groom themselves.",
    "pets/dogs.md": "# Dogs\n\nDogs are loyal companions; puppies need daily walks and obedience training.",
    "ops/errors.md": "# Error codes\n\nError KX-4471 means the worker lost its lease and the job was re-queued.",
    "ops/backup.md": "# Backups\n\nSnapshots of the database are written to object storage every night.",
    "food/bread.md": "# Bread\n\nSourdough bread rises slowly because wild yeast ferments the dough overnight.",
}


@pytest.fixture
async def corpus(tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str) -> Path:
    for rel, text in CORPUS.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    return tmp_path


async def top(store: Store, embedder: Embedder, kb: str, query: str, **kw: object) -> list[str]:
    options = SearchOptions(top_k=int(kw.pop("k", 3)), alpha=float(kw.pop("alpha", 0.5)), **kw)  # type: ignore[arg-type]
    return [s.source.split("/", 3)[-1] for s in await retrieve(store, embedder, kb, query, options)]


async def test_exact_identifier_wins_through_bm25(corpus: Path, store: Store, embedder: Embedder, kb: str) -> None:
    ranked = await top(store, embedder, kb, "KX-4471", alpha=0.3)
    assert ranked[0].endswith("ops/errors.md")


async def test_paraphrase_wins_through_vectors(corpus: Path, store: Store, embedder: Embedder, kb: str) -> None:
    ranked = await top(store, embedder, kb, "which animal makes a purring noise?", alpha=0.75)
    assert ranked[0].endswith("pets/cats.md")
    ranked = await top(store, embedder, kb, "how does a naturally leavened loaf get its rise?", alpha=0.75)
    assert ranked[0].endswith("food/bread.md")


async def test_results_carry_scores_sections_and_snippets(
    corpus: Path, store: Store, embedder: Embedder, kb: str
) -> None:
    results = await retrieve(store, embedder, kb, "nightly database snapshots", SearchOptions(top_k=5, alpha=0.5))
    assert results[0].title == "Backups" and results[0].section == ""  # the section trail below the title
    assert results[0].snippet.startswith("# Backups Snapshots")
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    # Relevance (the passage's cosine with the query) only when asked for: fetching the vectors costs time.
    assert {r.relevance for r in results} == {None}
    scored = await retrieve(
        store, embedder, kb, "nightly database snapshots", SearchOptions(top_k=5, alpha=0.5, relevance=True)
    )
    assert [r.source for r in scored] == [r.source for r in results]
    best = scored[0]
    query = embedder.embed_query("nightly database snapshots")
    [chunk] = embedder.embed_documents([embedding_text(best.title, best.section, best.text, EMBED_TEXT)])
    cosine = sum(a * b for a, b in zip(query, chunk, strict=True))  # both unit length
    assert best.relevance == pytest.approx(cosine, abs=1e-3)
    assert all(r.relevance is not None and r.relevance < scored[0].relevance for r in scored[1:])


async def test_source_prefix_and_document_filters(corpus: Path, store: Store, embedder: Embedder, kb: str) -> None:
    ranked = await top(store, embedder, kb, "animals", k=10, source_prefix=str(corpus / "ops"))
    assert sorted(ranked) == sorted(s for s in ranked if "/ops/" in s) and len(ranked) == 2
    dogs = await retrieve(store, embedder, kb, "walks", SearchOptions(top_k=10, alpha=0.5))
    only = await top(store, embedder, kb, "anything", k=10, doc_id=dogs[0].doc_id)
    assert len(only) == 1 and only[0].endswith("pets/dogs.md")


async def test_unknown_and_empty_kb(store: Store, embedder: Embedder, kb: str) -> None:
    with pytest.raises(KBNotFound, match=f"knowledge base '{kb}' does not exist"):
        await retrieve(store, embedder, kb, "q", SearchOptions(top_k=3, alpha=0.5))
    await store.ensure_kb(
        kb, KBMeta(embed_model=embedder.name, embed_dim=embedder.dim, chunk_size=1000, chunk_overlap=150)
    )
    with pytest.raises(EmptyKB, match="is empty"):
        await store.require_chunks(kb)
    await store.delete_kb(kb)
    with pytest.raises(KBNotFound):
        await store.delete_kb(kb)


# One long reference document whose every section matches the question better than the short answer does.
MANUAL = "# Kettle manual\n\n" + "\n\n".join(
    f"## Descaling the kettle, step {n}\n\nDescale the kettle: descaling the kettle keeps the kettle clean ({n})."
    for n in range(8)
)
ANSWER = "# Limescale\n\nTo descale a kettle, boil citric acid in it and rinse."


async def test_document_cap_lets_the_short_answer_in(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    (tmp_path / "manual.md").write_text(MANUAL)
    (tmp_path / "limescale.md").write_text(ANSWER)
    for rel, text in CORPUS.items():
        (tmp_path / rel.replace("/", "-")).write_text(text)
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    query = "how do I descale the kettle"
    uncapped = await top(store, embedder, kb, query, k=3, doc_cap=0)
    assert uncapped == [str(tmp_path / "manual.md").split("/", 3)[-1]] * 3  # the long document takes every slot
    capped = await top(store, embedder, kb, query, k=3, doc_cap=1)
    assert capped[:2] == [str(tmp_path / n).split("/", 3)[-1] for n in ("manual.md", "limescale.md")]
    assert len(set(capped)) == 3
    two = await top(store, embedder, kb, query, k=3, doc_cap=2)
    assert two.count(uncapped[0]) == 2


async def test_length_penalty_applies_to_relative_scores_only(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    (tmp_path / "manual.md").write_text(MANUAL)
    (tmp_path / "limescale.md").write_text(ANSWER)
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    query = "how do I descale the kettle"

    async def order(**options: Any) -> list[str]:
        found = await retrieve(store, embedder, kb, query, SearchOptions(top_k=3, alpha=0.5, **options))
        return [s.source.rsplit("/", 1)[-1] for s in found]

    assert await order(doc_length_penalty=0.0) == ["manual.md", "limescale.md"]
    assert await order(doc_length_penalty=1.0) == ["limescale.md", "manual.md"]  # 1 × ln 8 chunks
    # Ranked fusion's scores are a few hundredths: the penalty, sized for 0–1 scores, is not applied to them.
    ranked = await order(fusion="ranked", doc_length_penalty=0.0)
    assert await order(fusion="ranked", doc_length_penalty=1.0) == ranked


async def test_keyword_fields_choose_what_bm25_reads(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    # No heading: the title is the file name, a word the text never says.
    (tmp_path / "zorblax-notes.md").write_text("Calibrate the gauge before each run.")
    (tmp_path / "other.md").write_text("# Other\n\nNothing about gauges here.")
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    everywhere = await retrieve(
        store, embedder, kb, "zorblax", SearchOptions(top_k=2, alpha=0.0, keyword_fields=("text", "title"))
    )
    assert everywhere[0].title == "zorblax-notes.md" and everywhere[0].score > 0
    text_only = await retrieve(store, embedder, kb, "zorblax", SearchOptions(top_k=2, alpha=0.0))
    assert all(s.score == 0 for s in text_only)  # BM25 over the text finds the word nowhere


def test_search_options_follow_the_settings(settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "search_doc_cap": 3,
            "search_keyword_fields": ("text", "section"),
            "search_doc_damping": -0.3,
            "search_doc_length_penalty": 0.2,
            "search_keyword_question_words": True,
        }
    )
    options = SearchOptions.from_settings(configured, top_k=7)
    assert (options.top_k, options.alpha, options.doc_cap, options.doc_damping) == (7, settings.search_alpha, 3, -0.3)
    assert options.doc_length_penalty == 0.2 and options.keyword_question_words
    assert not SearchOptions.from_settings(settings).keyword_question_words  # the default: BM25 skips "how do I"
    assert options.keyword_fields == ("text", "section")
    assert Settings(_env_file=None, SEARCH_KEYWORD_FIELDS="text, title").search_keyword_fields == ("text", "title")
    with pytest.raises(ValidationError, match="SEARCH_KEYWORD_FIELDS"):
        Settings(_env_file=None, SEARCH_KEYWORD_FIELDS="body")
    for bad in ("-0.1", "1.5", "lots"):
        with pytest.raises(ValidationError, match="SEARCH_DOC_LENGTH_PENALTY"):
            Settings(_env_file=None, SEARCH_DOC_LENGTH_PENALTY=bad)
    with pytest.raises(ValidationError, match="SEARCH_KEYWORD_QUESTION_WORDS"):
        Settings(_env_file=None, SEARCH_KEYWORD_QUESTION_WORDS="maybe")


def passage(doc: str, score: float) -> Source:
    return Source(
        title=doc,
        source=doc,
        origin="",
        section="",
        snippet="",
        score=score,
        relevance=score,
        doc_id=doc,
        position=0,
        text="",
    )


def test_document_damping_orders_documents_by_more_than_their_best_passage() -> None:
    ranked = [passage("long", 0.9), passage("short", 0.85), passage("long", 0.5), passage("long", 0.5)]
    assert by_document(ranked) == ranked  # best passage only: the fused order as it is
    # +0.1 × the other passages' scores lifts the long document's other two passages next to its best...
    assert [s.doc_id for s in by_document(ranked, damping=0.1)] == ["long", "long", "long", "short"]
    # ...and a negative share pushes down a document that matches everywhere.
    assert [s.doc_id for s in by_document(ranked, damping=-0.1)] == ["short", "long", "long", "long"]


def test_length_penalty_discounts_a_long_documents_best_passage_by_its_chunk_count() -> None:
    long_best = dataclasses.replace(passage("long", 0.9), doc_chunks=40)
    ranked = [long_best, passage("short", 0.85), passage("other", 0.2)]
    # 0.9 − 0.1 × ln 40 = 0.53 falls below the one-chunk answer's 0.85, but not below a weak one-chunk match.
    assert [s.doc_id for s in by_document(ranked, length_penalty=0.1)] == ["short", "long", "other"]
    assert [s.doc_id for s in by_document(ranked, length_penalty=0.01)] == ["long", "short", "other"]
    # A one-chunk document loses nothing (ln 1 = 0): equal lengths keep the fused order.
    assert by_document([passage("a", 0.5), passage("b", 0.4)], length_penalty=0.5)[0].doc_id == "a"
    # Passages stay interleaved: with a cap of 3, the three best passages, not one document's weaker ones.
    mixed = [passage("a", 0.9), passage("b", 0.85), passage("c", 0.8), passage("a", 0.3), passage("a", 0.2)]
    assert by_document(mixed, length_penalty=0.1) == mixed
    assert [s.doc_id for s in cap_per_document(by_document(mixed, length_penalty=0.1), 3)[:3]] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("question", "keywords"),
    [
        ("How do I descale the kettle?", "descale the kettle"),
        ("What's the difference between `local` and `my`?", "the difference between `local` and `my`"),
        ("Why does my shell not print?", "my shell not print"),
        ("How can I use fetchmail with qmail?", "use fetchmail with qmail"),
        ("Is there a way to do X?", "Is there a way to do X"),
        ("How do I?", "How do I?"),  # nothing else left: the question as it is
        ("What’s new in 2.0?", "new in 2.0"),  # the apostrophe phones type
        ("Why can’t I log in?", "log in"),
    ],
)
def test_keyword_query_drops_question_words(question: str, keywords: str) -> None:
    assert keyword_query(question) == keywords


async def test_ranked_fusion_and_keyword_query_reach_weaviate(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    (tmp_path / "chatter.md").write_text("# Chatter\n\nHow do I do it? How do you do that? I do, I do.")
    (tmp_path / "kettle.md").write_text("# Kettle\n\nDescale it with citric acid.")
    await ingest(store, embedder, [str(tmp_path)], kb=kb, settings=settings)
    question = "How do I descale?"
    as_asked = SearchOptions(top_k=1, alpha=0.0, keyword_question_words=True)
    assert (await retrieve(store, embedder, kb, question, as_asked))[0].title == "Chatter"  # "how do I" outweighs
    opening_dropped = SearchOptions(top_k=1, alpha=0.0)  # the default
    assert (await retrieve(store, embedder, kb, question, opening_dropped))[0].title == "Kettle"
    ranked = await retrieve(store, embedder, kb, "descale", SearchOptions(top_k=2, alpha=0.5, fusion="ranked"))
    assert ranked[0].title == "Kettle"
    assert ranked[0].score < 0.05  # reciprocal-rank scores, where relative-score fusion gives the best 1.0 here
