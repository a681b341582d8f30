"""`switchboard export raft`: fine-tuning data the RAFT way (Zhang et al., 2024, "RAFT: Adapting Language Model
to Domain Specific RAG"). Each example is a generated question, its oracle chunk plus K distractor chunks — or,
for a share 1 − P of the examples, the K distractors alone, so the model also learns to answer from what it has
learned — and a reference answer written from the oracle with quoted evidence and citations.

The examples use the kit's own answer prompt (core.answer.prompt.answer_messages: the bot's system prompt,
numbered sources, the question), so a model fine-tuned on them is prompted at answer time exactly as trained."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from core.answer.llm import LLM
from core.answer.prompt import answer_messages
from core.errors import ConfigError, LLMError
from core.quality.prompts import NO_QUESTION, raft_answer_messages
from core.quality.questions import Generated, Tally, drafted
from core.quality.sample import KBChunk
from core.types import heading

ANSWER_TOKENS = 512
_QUOTE = re.compile(r"##begin_quote##(.*?)##end_quote##", re.S)
_ORACLE_CITATION = re.compile(r"\[1\]")

ANSWER_REASONS = {
    "answer_declined": "the model could not answer from the oracle chunk",
    "no_evidence": "no quoted evidence copied from the oracle chunk",
    "no_answer": "no <ANSWER>: part",
    "answer_failed": "the model call for the answer failed",
}


@dataclass(frozen=True, kw_only=True)
class RaftOptions:
    n: int
    seed: int
    oracle_share: float  # P: the share of examples whose context holds the oracle chunk
    distractors: int  # K
    validation_share: float

    def __post_init__(self) -> None:
        if not 0 <= self.oracle_share <= 1:
            raise ConfigError("--oracle-share must be between 0 and 1")
        if not 0 <= self.validation_share < 1:
            raise ConfigError("--validation must be at least 0 and below 1")
        if self.distractors < 1:
            raise ConfigError("--distractors must be at least 1")


@dataclass(frozen=True, kw_only=True)
class RaftExample:
    question: str
    oracle: KBChunk
    context: tuple[KBChunk, ...]  # as numbered in the prompt, [1] first
    answer: str  # citations numbered as in `context`
    split: str  # "train" or "validation"

    @property
    def oracle_kept(self) -> bool:
        return self.oracle in self.context

    def chat(self, persona: str, system_prompt: str | None) -> dict[str, Any]:
        """One line of OpenAI's chat fine-tuning format."""
        prompt = answer_messages(
            self.question, [c.as_source() for c in self.context], (), persona=persona, system_prompt=system_prompt
        )
        return {"messages": [*prompt, {"role": "assistant", "content": self.answer}]}

    def plain(self) -> dict[str, Any]:
        """The same example as fields, for other trainers."""
        return {
            "question": self.question,
            "context": [
                {
                    "n": n,
                    "source": c.shown,
                    "doc_id": c.doc_id,
                    "position": c.position,
                    "title": c.title,
                    "section": c.section,
                    "text": c.text,
                    "oracle": c == self.oracle,
                }
                for n, c in enumerate(self.context, 1)
            ],
            "oracle_in_context": self.oracle_kept,
            "oracle": {"source": self.oracle.shown, "doc_id": self.oracle.doc_id, "position": self.oracle.position},
            "answer": self.answer,
            "split": self.split,
        }


@dataclass(kw_only=True)
class RaftExport(Tally):
    examples: list[RaftExample] = field(default_factory=list)


def answer_rejection(reply: str, oracle: str) -> str | None:
    """Why a reference answer is unusable: declined, no evidence quoted verbatim from the oracle, no answer part."""
    if not reply.strip() or reply.strip().upper().rstrip(".") == NO_QUESTION:
        return "answer_declined"
    flat = " ".join(oracle.split())
    quotes = [" ".join(q.split()) for q in _QUOTE.findall(reply)]
    if not quotes or not all(q and q in flat for q in quotes):
        return "no_evidence"
    if "<ANSWER>:" not in reply:
        return "no_answer"
    return None


def distractors(pool: Sequence[KBChunk], oracle: KBChunk, k: int, rng: random.Random) -> list[KBChunk]:
    """K chunks drawn at random, never the oracle nor a chunk with the oracle's text."""
    same = " ".join(oracle.text.split())
    eligible = [c for c in pool if c.id != oracle.id and " ".join(c.text.split()) != same]
    if len(eligible) < k:
        raise ConfigError(f"the knowledge base has {len(eligible) + 1} usable chunks: too few for {k} distractors")
    return rng.sample(eligible, k)


def _renumber(answer: str, oracle_at: int | None) -> str:
    """The answer cites the oracle as [1]: as its place in the context, or not at all when it was left out."""
    if oracle_at is None:
        return re.sub(r" ?\[1\]", "", answer)
    return _ORACLE_CITATION.sub(f"[{oracle_at}]", answer)


async def _answered(
    llm: LLM, generated: Generated, result: RaftExport, accepted: list[tuple[str, KBChunk, str]]
) -> bool:
    """Ask for the question's reference answer; keep it in `accepted` if it passes, else count why not."""
    chunk = generated.chunk
    try:
        reply = await llm.complete(
            raft_answer_messages(heading(chunk.title, chunk.section), chunk.text, generated.question),
            max_tokens=ANSWER_TOKENS,
        )
    except LLMError:
        result.rejected["answer_failed"] += 1
        return False
    reason = answer_rejection(reply, chunk.text)
    if reason is not None:
        result.rejected[reason] += 1
        return False
    accepted.append((generated.question, chunk, reply.strip()))
    return True


async def export_raft(
    llm: LLM, chunks: Sequence[KBChunk], options: RaftOptions, progress: Callable[[int], None] | None = None
) -> RaftExport:
    if len(chunks) <= options.distractors:
        raise ConfigError(
            f"the knowledge base has {len(chunks)} usable chunks: too few for {options.distractors} distractors"
        )
    rng = random.Random(options.seed)
    result = RaftExport()
    accepted: list[tuple[str, KBChunk, str]] = []
    async with aclosing(drafted(llm, chunks, options.n, rng, result)) as questions:
        async for generated in questions:
            if await _answered(llm, generated, result, accepted) and progress is not None:
                progress(1)
            if len(accepted) >= options.n:
                break

    # Exact shares (not a coin per example): round(P × m) keep the oracle, round(V × m) are held out.
    m = len(accepted)
    keep = set(rng.sample(range(m), round(options.oracle_share * m)))
    held_out = set(rng.sample(range(m), round(options.validation_share * m)))
    for i, (question, oracle, answer) in enumerate(accepted):
        context = distractors(chunks, oracle, options.distractors, rng)
        oracle_at = None
        if i in keep:
            oracle_at = rng.randint(1, len(context) + 1)
            context.insert(oracle_at - 1, oracle)
        result.examples.append(
            RaftExample(
                question=question,
                oracle=oracle,
                context=tuple(context),
                answer=_renumber(answer, oracle_at),
                split="validation" if i in held_out else "train",
            )
        )
    return result
