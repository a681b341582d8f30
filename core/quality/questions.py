"""`switchboard eval generate`: one question per sampled chunk, written by the configured LLM, kept only when
retrieval-free checks pass, as the `{"question", "expected_sources"}` lines `switchboard eval` reads.

The checks look at the question and its chunk alone (no search, so they do not favour what retrieval already
finds): the model declined, not a question, a copy of the chunk's wording, too few of its content words in the
chunk (about something else, or unanswerable from it), or a question already asked."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from core.answer.llm import LLM
from core.errors import LLMError
from core.quality.prompts import NO_QUESTION, question_messages
from core.quality.sample import KBChunk, stratified, words

logger = logging.getLogger(__name__)

COPY_WORDS = 8  # a run of this many of the chunk's words in a row is a copy, not a question
MIN_OVERLAP = 0.5  # share of the question's content words that must occur in its chunk
MAX_ATTEMPTS_FACTOR = 3  # chunks tried per question wanted, at most
MAX_FAILURES = 3  # model calls failing in a row: the model is down, stop
QUESTION_TOKENS = 96

# Words that say nothing about content (question words, auxiliaries, pronouns, very common verbs).
STOPWORDS = frozenset(
    """a an and are as at be by can could do does did for from has have how i if in into is it its me my of on or
    our should so that the their them then there these this those to use used using was we what when where which
    who whom why will with would you your yours about after before does get set one two""".split()  # noqa: SIM905
)

REASONS = {
    "declined": "the model found no question the chunk answers",
    "not_a_question": "the reply is not a single question",
    "copies_chunk": f"copies {COPY_WORDS}+ words of the chunk in a row",
    "off_chunk": f"under {MIN_OVERLAP:.0%} of its content words are in the chunk (unanswerable from it)",
    "duplicate": "the same question was already asked",
    "model_failed": "the model call failed",
}


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if len(w) > 2 and w not in STOPWORDS and not w.isdigit()}


def cleaned(reply: str) -> str:
    """The question out of a model's reply: its first non-empty line, without a label or quotes."""
    line = next((ln.strip() for ln in reply.strip().splitlines() if ln.strip()), "")
    for label in ("question:", "q:"):
        if line.lower().startswith(label):
            line = line[len(label) :].strip()
    return line.strip("\"'“”* ").strip()


def rejection(question: str, chunk: str, asked: set[str]) -> str | None:
    """Why a question fails the retrieval-free checks, or None when it is kept."""
    if not question or question.upper().rstrip(".") == NO_QUESTION:
        return "declined"
    if not question.endswith("?") or question.count("?") > 1 or len(words(question)) < 3:
        return "not_a_question"
    q, c = words(question), words(chunk)
    run = min(COPY_WORDS, len(q))
    if run >= 5:
        grams = {tuple(c[i : i + run]) for i in range(len(c) - run + 1)}
        if any(tuple(q[i : i + run]) in grams for i in range(len(q) - run + 1)):
            return "copies_chunk"
    wanted = content_words(question)
    if not wanted or len(wanted & content_words(chunk)) / len(wanted) < MIN_OVERLAP:
        return "off_chunk"
    if " ".join(q) in asked:
        return "duplicate"
    return None


@dataclass(frozen=True, kw_only=True)
class Generated:
    question: str
    chunk: KBChunk

    def qa_line(self) -> dict[str, Any]:
        """What `switchboard eval` reads, and where the question came from."""
        return {
            "question": self.question,
            "expected_sources": [self.chunk.shown],
            "chunk": {"doc_id": self.chunk.doc_id, "position": self.chunk.position},
        }


@dataclass(kw_only=True)
class Tally:
    """Chunks tried, and the ones rejected by reason."""

    rejected: Counter[str] = field(default_factory=Counter)
    attempts: int = 0


@dataclass(kw_only=True)
class Generation(Tally):
    kept: list[Generated] = field(default_factory=list)


class QuestionWriter:
    """Asks the model for a chunk's question and checks it; remembers the questions kept (no duplicates) and
    stops everything when the model fails MAX_FAILURES times in a row."""

    def __init__(self, llm: LLM):
        self._llm = llm
        self._asked: set[str] = set()
        self._failures = 0

    async def write(self, chunk: KBChunk) -> tuple[str | None, str | None]:
        """(the question, None) when kept, else (None, the rejection reason)."""
        try:
            reply = await self._llm.complete(question_messages(chunk.title, chunk.text), max_tokens=QUESTION_TOKENS)
        except LLMError as exc:
            self._failures += 1
            if self._failures >= MAX_FAILURES:
                raise LLMError(f"the model failed {self._failures} times in a row, stopping: {exc}") from exc
            logger.warning("question for %s#%d: %s", chunk.shown, chunk.position, exc)
            return None, "model_failed"
        self._failures = 0
        question = cleaned(reply)
        reason = rejection(question, chunk.text, self._asked)
        if reason is not None:
            return None, reason
        self._asked.add(" ".join(words(question)))
        return question, None


async def drafted(
    llm: LLM, chunks: Iterable[KBChunk], n: int, rng: random.Random, tally: Tally
) -> AsyncGenerator[Generated, None]:
    """The questions that pass the checks, from chunks drawn stratified, until MAX_ATTEMPTS_FACTOR × n chunks
    were tried (the caller stops earlier once it has enough)."""
    writer = QuestionWriter(llm)
    for chunk in stratified(chunks, rng):
        if tally.attempts >= n * MAX_ATTEMPTS_FACTOR:
            return
        tally.attempts += 1
        question, reason = await writer.write(chunk)
        if question is None:
            tally.rejected[reason or "declined"] += 1
            continue
        yield Generated(question=question, chunk=chunk)


async def generate_questions(
    llm: LLM,
    chunks: Iterable[KBChunk],
    n: int,
    rng: random.Random,
    progress: Callable[[int], None] | None = None,
) -> Generation:
    """Up to `n` questions (see `drafted`)."""
    result = Generation()
    async with aclosing(drafted(llm, chunks, n, rng, result)) as questions:
        async for generated in questions:
            result.kept.append(generated)
            if progress is not None:
                progress(1)
            if len(result.kept) >= n:
                break
    return result
