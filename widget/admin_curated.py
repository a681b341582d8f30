"""The admin API's curated answers (/admin/curated, /admin/answers/{id}/promote): an operator's own answer, given
instead of a generated one when a question matches (core.answer.curated; `switchboard answers` in the CLI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, Field

from core.answer.curated import CuratedAnswers
from core.answer.curated_data import MAX_ANSWER_CHARS, MAX_PHRASINGS, MAX_QUESTION_CHARS, Asker, Curated
from core.answer.curated_data import CuratedInput as Entry
from core.errors import CuratedError
from core.types import Citation
from widget.admin import _errors, _known_bot, require_admin
from widget.deps import StateDep

router = APIRouter(
    prefix="/admin", tags=["Admin"], dependencies=[Depends(require_admin)], responses=_errors(401, 403, 503)
)


def get_curated(state: StateDep) -> CuratedAnswers:
    if state.assistant.curated is None:  # an assistant built without them (never by open_assistant)
        raise HTTPException(503, "curated answers are not available in this server")
    return state.assistant.curated


CuratedDep = Annotated[CuratedAnswers, Depends(get_curated)]
CuratedId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="id from the curated listing")]
AnswerId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="an answer_id from Done, /admin/feedback")]
Question = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]
Answer = Annotated[str, Field(min_length=1, max_length=MAX_ANSWER_CHARS)]
Paraphrases = Annotated[list[Question], Field(max_length=MAX_PHRASINGS - 1)]


class PromoteIn(BaseModel):
    answer: Answer = Field(description="The correct answer (Markdown), written by the operator")
    paraphrases: Paraphrases = Field([], description="Other ways people ask the same question")
    question: Question | None = Field(
        None,
        description="The question reworded by the operator. Omitted: the user's question is copied as asked, "
        "and erased with that user (DELETE /admin/users/…) or conversation",
    )
    keep_sources: bool = Field(True, description="Keep the sources the promoted answer cited")


class CuratedIn(BaseModel):
    bot: str = Field("default", max_length=100)
    question: Question
    paraphrases: Paraphrases = []
    answer: Answer
    sources: list[Citation] = Field([], max_length=20)


class CuratedPatch(BaseModel):
    question: Question | None = None
    paraphrases: Paraphrases | None = Field(None, description="Replaces the paraphrases")
    answer: Answer | None = None
    sources: list[Citation] | None = Field(None, max_length=20)


class CuratedOut(BaseModel):
    id: str
    bot: str
    question: str
    paraphrases: list[str]
    answer: str
    sources: list[Citation]
    promoted_from: str | None = Field(description="The answer_id it was promoted from")
    hits: int = Field(description="Questions it answered")
    last_hit_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CuratedListOut(BaseModel):
    curated: list[CuratedOut]


def _out(c: Curated) -> CuratedOut:
    return CuratedOut(
        id=c.id,
        bot=c.bot,
        question=c.questions[0] if c.questions else "",
        paraphrases=list(c.questions[1:]),
        answer=c.answer,
        sources=list(c.citations),
        promoted_from=c.promoted_from,
        hits=c.hits,
        last_hit_at=c.last_hit_at,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


@router.post("/answers/{answer_id}/promote", status_code=201, responses=_errors(404, 422))
async def promote(answer_id: AnswerId, body: PromoteIn, state: StateDep, curated: CuratedDep) -> CuratedOut:
    """Make the operator's answer the answer to this logged answer's question (and the paraphrases given)."""
    record = await state.assistant.logged(answer_id)
    if record is None:
        raise HTTPException(404, f"no answer {answer_id} in the answer log")
    asked_by = None
    if body.question is None:
        asked_by = Asker(user_id=record.user_id, channel=record.channel, conversation=record.conversation)
    entry = Entry(
        bot=record.bot,
        questions=(body.question or record.question, *body.paraphrases),
        answer=body.answer,
        citations=record.citations if body.keep_sources else (),
    )
    try:
        return _out(await curated.add(entry, asked_by=asked_by, promoted_from=answer_id))
    except CuratedError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.post("/curated", status_code=201, responses=_errors(404, 422))
async def create(body: CuratedIn, state: StateDep, curated: CuratedDep) -> CuratedOut:
    """A curated answer written from scratch."""
    _known_bot(state, body.bot)
    entry = Entry(
        bot=body.bot, questions=(body.question, *body.paraphrases), answer=body.answer, citations=tuple(body.sources)
    )
    try:
        return _out(await curated.add(entry))
    except CuratedError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/curated", responses=_errors(404))
async def list_curated(state: StateDep, curated: CuratedDep, bot: str | None = None) -> CuratedListOut:
    """Every curated answer (of one bot), oldest first, with its hit count."""
    if bot is not None:
        _known_bot(state, bot)
    return CuratedListOut(curated=[_out(c) for c in await curated.list(bot)])


@router.patch("/curated/{curated_id}", responses=_errors(404, 422))
async def edit(curated_id: CuratedId, body: CuratedPatch, curated: CuratedDep) -> CuratedOut:
    """Change the answer, its sources, the question or the paraphrases (fields left out stay)."""
    current = await curated.get(curated_id)
    if current is None:
        raise HTTPException(404, f"no curated answer {curated_id}")
    questions = None
    if body.question is not None or body.paraphrases is not None:
        questions = (
            body.question or current.questions[0],
            *(body.paraphrases if body.paraphrases is not None else current.questions[1:]),
        )
    try:
        updated = await curated.update(
            curated_id,
            answer=body.answer,
            questions=questions,
            citations=body.sources,
        )
    except CuratedError as exc:
        raise HTTPException(422, str(exc)) from exc
    if updated is None:
        raise HTTPException(404, f"no curated answer {curated_id}")
    return _out(updated)


@router.delete("/curated/{curated_id}", status_code=204, responses=_errors(404))
async def delete(curated_id: CuratedId, curated: CuratedDep) -> Response:
    if not await curated.delete(curated_id):
        raise HTTPException(404, f"no curated answer {curated_id}")
    return Response(status_code=204)
