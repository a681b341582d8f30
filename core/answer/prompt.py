"""Pure functions from (question, sources, history) to chat messages, and citation parsing."""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.types import Source, Turn, heading

DEFAULT_SYSTEM_PROMPT = """You are {persona}, an assistant that answers questions using only the numbered sources \
provided with each question.
- Base every statement on the sources and cite them with their numbers in square brackets, like [1] or [2][3].
- If the sources do not contain the answer, say that you don't know. Never invent facts, commands or code.
- Be concise. Use Markdown: short paragraphs, lists, `inline code` and fenced code blocks where they help."""

CONDENSE_PROMPT = """Rewrite the user's last question as one standalone search query, using the conversation \
only to resolve what it refers to. Reply with the query alone, no quotes, no explanation."""

_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")

ChatMessage = dict[str, str]


def system_message(persona: str, system_prompt: str | None) -> ChatMessage:
    template = system_prompt or DEFAULT_SYSTEM_PROMPT
    return {"role": "system", "content": template.replace("{persona}", persona)}


def format_sources(sources: Sequence[Source]) -> str:
    blocks = []
    for n, s in enumerate(sources, 1):
        blocks.append(f"[{n}] {heading(s.title, s.section)}\n{s.text.strip()}")
    return "\n\n".join(blocks)


def answer_messages(
    question: str, sources: Sequence[Source], history: Sequence[Turn], *, persona: str, system_prompt: str | None
) -> list[ChatMessage]:
    user = f"Sources:\n\n{format_sources(sources)}\n\nQuestion: {question}"
    return [
        system_message(persona, system_prompt),
        *({"role": t.role, "content": t.content} for t in history),
        {"role": "user", "content": user},
    ]


def condense_messages(question: str, history: Sequence[Turn]) -> list[ChatMessage]:
    transcript = "\n".join(f"{t.role.capitalize()}: {t.content}" for t in history)
    return [
        {"role": "system", "content": CONDENSE_PROMPT},
        {"role": "user", "content": f"Conversation:\n{transcript}\n\nLast question: {question}"},
    ]


def citation_spans(text: str) -> dict[int, tuple[int, int]]:
    """Each source number the text cites, in first-cited order, with the span of its first `[n]` marker."""
    spans: dict[int, tuple[int, int]] = {}
    for match in _CITATION.finditer(text):
        for part in match.group(1).split(","):
            spans.setdefault(int(part), match.span())
    return spans


def cited_numbers(text: str, available: int) -> list[int]:
    """The source numbers an answer cites, in first-cited order, ignoring numbers that were never given."""
    return [n for n in citation_spans(text) if 1 <= n <= available]
