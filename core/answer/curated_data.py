"""What a curated answer is (core.answer.curated): what an operator writes, checked; what is stored; a match."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.errors import CuratedError
from core.types import Citation

MAX_QUESTION_CHARS = 1000
MAX_ANSWER_CHARS = 20000
MAX_PHRASINGS = 50


@dataclass(frozen=True, kw_only=True)
class Asker:
    """Whose words a promoted question is."""

    user_id: str | None
    channel: str
    conversation: str


@dataclass(frozen=True, kw_only=True)
class CuratedInput:
    """What an operator writes: the questions (the first is the main one), the answer, its sources if any."""

    bot: str
    questions: tuple[str, ...]
    answer: str
    citations: tuple[Citation, ...] = ()

    def checked(self) -> CuratedInput:
        questions = tuple(dict.fromkeys(q.strip() for q in self.questions if q.strip()))
        answer = self.answer.strip()
        if not questions:
            raise CuratedError("a curated answer needs a question")
        if not answer:
            raise CuratedError("the answer is empty")
        if len(questions) > MAX_PHRASINGS:
            raise CuratedError(f"at most {MAX_PHRASINGS} phrasings of one question")
        if any(len(q) > MAX_QUESTION_CHARS for q in questions):
            raise CuratedError(f"a question is longer than {MAX_QUESTION_CHARS} characters")
        if len(answer) > MAX_ANSWER_CHARS:
            raise CuratedError(f"the answer is longer than {MAX_ANSWER_CHARS} characters")
        citations = tuple(Citation(**{**asdict(c), "n": n}) for n, c in enumerate(self.citations, 1))
        return CuratedInput(bot=self.bot, questions=questions, answer=answer, citations=citations)


@dataclass(frozen=True, kw_only=True)
class Curated:
    id: str
    bot: str
    questions: tuple[str, ...]
    answer: str
    citations: tuple[Citation, ...]
    promoted_from: str | None
    hits: int
    last_hit_at: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, kw_only=True)
class Match:
    curated: Curated
    similarity: float
    question: str  # the phrasing it matched
