"""The console's curated answers: list (per bot), add, edit, delete, and "promote this answer" from a logged
answer (a transcript or the 👎 queue). Each action calls the admin API's own functions (widget.admin_curated)
with its models, so the same checks and refusals apply; this module adds the session, the CSRF check, form
parsing and the HTML.
"""

from __future__ import annotations

from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from widget import admin_curated as api
from widget.console_auth import PREFIX, SessionDep, check_csrf, page, router
from widget.deps import StateDep

Csrf = Annotated[str, Form(max_length=500)]
# Bounded here against abuse; the admin API's models check each field's own limits.
Field = Annotated[str, Form(max_length=100_000)]
M = TypeVar("M", bound=BaseModel)


def _lines(text: str) -> list[str]:
    """Paraphrases, one a line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _model(model: type[M], **fields: object) -> M:
    """The admin API's request model from form fields: its refusals as a 422 naming the field."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HTTPException(422, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc


def _back(bot: str) -> Response:
    return RedirectResponse(f"{PREFIX}/curated?{urlencode({'bot': bot})}", status_code=303)


@router.get("/curated")
async def curated(request: Request, state: StateDep, session: SessionDep, bot: str = "") -> HTMLResponse:
    """The curated answers (of one bot), oldest first, with their hits; a form to add one."""
    listed = await api.list_curated(state, api.get_curated(state), bot or None)
    return page(
        request,
        "console/curated.html",
        active="curated",
        csrf=session["csrf"],
        curated=listed.curated,
        bot=bot,
        bots=sorted(state.assistant.profiles),
    )


@router.post("/curated")
async def add(
    state: StateDep,
    session: SessionDep,
    csrf: Csrf = "",
    bot: Annotated[str, Form(max_length=100)] = "",
    question: Field = "",
    paraphrases: Field = "",
    answer: Field = "",
) -> Response:
    check_csrf(csrf, session["csrf"])
    body = _model(api.CuratedIn, bot=bot, question=question, paraphrases=_lines(paraphrases), answer=answer)
    await api.create(body, state, api.get_curated(state))
    return _back(body.bot)


@router.post("/curated/{curated_id}/edit")
async def edit(
    curated_id: api.CuratedId,
    state: StateDep,
    session: SessionDep,
    csrf: Csrf = "",
    question: Field = "",
    paraphrases: Field = "",
    answer: Field = "",
) -> Response:
    """Replace the question, paraphrases and answer (the form shows all three; sources stay)."""
    check_csrf(csrf, session["csrf"])
    body = _model(api.CuratedPatch, question=question, paraphrases=_lines(paraphrases), answer=answer)
    updated = await api.edit(curated_id, body, api.get_curated(state))
    return _back(updated.bot)


@router.post("/curated/{curated_id}/delete")
async def delete(curated_id: api.CuratedId, state: StateDep, session: SessionDep, csrf: Csrf = "") -> Response:
    check_csrf(csrf, session["csrf"])
    store = api.get_curated(state)
    current = await store.get(curated_id)
    await api.delete(curated_id, store)  # a 404 when it is gone
    return _back(current.bot if current else "")


@router.get("/answers/{answer_id}/promote")
async def promote_page(request: Request, answer_id: api.AnswerId, state: StateDep, session: SessionDep) -> HTMLResponse:
    """The logged answer, and a form to write the correct one for its question."""
    record = await state.assistant.logged(answer_id)
    if record is None:
        raise HTTPException(404, f"no answer {answer_id} in the answer log")
    return page(request, "console/promote.html", active="curated", csrf=session["csrf"], record=record)


@router.post("/answers/{answer_id}/promote")
async def promote(
    answer_id: api.AnswerId,
    state: StateDep,
    session: SessionDep,
    csrf: Csrf = "",
    answer: Field = "",
    question: Field = "",
    paraphrases: Field = "",
    keep_sources: Annotated[bool, Form()] = False,
) -> Response:
    """POST /admin/answers/{id}/promote: the question as asked unless reworded, the operator's answer."""
    check_csrf(csrf, session["csrf"])
    body = _model(
        api.PromoteIn,
        answer=answer,
        question=question.strip() or None,
        paraphrases=_lines(paraphrases),
        keep_sources=keep_sources,
    )
    created = await api.promote(answer_id, body, state, api.get_curated(state))
    return _back(created.bot)
