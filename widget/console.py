"""The operator's web page, /admin/ui: sign in with ADMIN_API_KEY (widget.console_auth), then pages over the
kit's own code: Analytics (the stats of GET /admin/stats), Feedback (the 👎 queue of GET /admin/feedback),
Conversations (GET /admin/conversations, and each one's transcript), Bots (read-only), API keys (the store
`switchboard keys` uses); Knowledge bases are widget.console_kbs's. Every POST checks the session's CSRF token
first.

Server-rendered (Jinja2): every table reads without JavaScript; static/console.js (Chart.js from npm, bundled
by esbuild like the widget) only draws charts from the numbers the page already shows. Off (404) unless
ADMIN_API_KEY is set.
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from core.answer import privacy
from widget import console_kbs  # noqa: F401  (its pages are on the console's router, installed below)
from widget.admin import _known_bot
from widget.admin_stats import read_stats
from widget.assets import built_file
from widget.console_auth import PREFIX, SessionDep, SignedOut, check_csrf, page, router
from widget.deps import StateDep
from widget.stats_out import stats_out

Csrf = Annotated[str, Form(max_length=500)]


@router.get("/")
def home(session: SessionDep) -> Response:
    return RedirectResponse(f"{PREFIX}/analytics", status_code=303)


@router.get("/analytics")
async def analytics(
    request: Request, state: StateDep, session: SessionDep, since: str = "7d", bot: str = ""
) -> HTMLResponse:
    stats = stats_out(await read_stats(state, since, bot or None))
    channels = sorted({d.channel for d in stats.per_day})
    days: dict[str, dict[str, int]] = {}
    for d in stats.per_day:
        days.setdefault(d.day, {})[d.channel] = d.questions
    return page(
        request,
        "console/analytics.html",
        active="analytics",
        csrf=session["csrf"],
        stats=stats,
        since=since,
        bot=bot,
        bots=sorted(state.assistant.profiles),
        channels=channels,
        days=days,
    )


@router.get("/console.js")
def console_js() -> Response:
    return built_file("console.js", "text/javascript")


@router.get("/console.css")
def console_css() -> Response:
    return built_file("console.css", "text/css")


def _when(moment: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment)) if moment else "never"


@router.get("/feedback")
async def feedback(request: Request, state: StateDep, session: SessionDep, bot: str = "") -> HTMLResponse:
    """The 👎 queue: the latest thumbs-down first, with the question, answer, sources and comment."""
    if bot:
        _known_bot(state, bot)
    rated = await state.assistant.rated_answers(bot=bot or None, rating="down", limit=200)
    return page(
        request,
        "console/feedback.html",
        active="feedback",
        csrf=session["csrf"],
        rated=rated,
        bot=bot,
        bots=sorted(state.assistant.profiles),
        when=_when,
    )


@router.get("/conversations")
async def conversations(request: Request, state: StateDep, session: SessionDep, bot: str = "") -> HTMLResponse:
    """A bot's conversations, the most recently active first (GET /admin/conversations)."""
    bots = sorted(state.assistant.profiles)
    bot = bot or bots[0]
    _known_bot(state, bot)
    return page(
        request,
        "console/conversations.html",
        active="conversations",
        csrf=session["csrf"],
        conversations=await state.assistant.conversations(bot, 200),
        bot=bot,
        bots=bots,
        when=_when,
    )


Text = Annotated[str, Query(min_length=1, max_length=500)]


@router.get("/transcript")
async def transcript(
    request: Request, state: StateDep, session: SessionDep, channel: Text, conversation: Text
) -> HTMLResponse:
    """One conversation's questions and answers, each with the sources it showed and its feedback."""
    answers = await state.assistant.transcript(channel, conversation)
    if not answers:
        raise HTTPException(404, "no answers in that conversation (erased, or expired)")
    ratings = {a.id: await state.assistant.feedback(a.id) for a in answers}
    return page(
        request,
        "console/transcript.html",
        active="conversations",
        csrf=session["csrf"],
        channel=channel,
        conversation=conversation,
        answers=answers,
        ratings=ratings,
        when=_when,
    )


@router.post("/transcript/forget")
async def forget(
    state: StateDep,
    session: SessionDep,
    csrf: Csrf = "",
    channel: Annotated[str, Form(min_length=1, max_length=500)] = "",
    conversation: Annotated[str, Form(min_length=1, max_length=500)] = "",
) -> Response:
    """Erase the conversation (its answers, their feedback, its memory), as the widget's "new conversation"."""
    check_csrf(csrf, session["csrf"])
    answers = await state.assistant.transcript(channel, conversation)
    await privacy.forget_conversation(state.assistant, channel, conversation)
    bot = answers[0].bot if answers else ""
    return RedirectResponse(f"{PREFIX}/conversations?{urlencode({'bot': bot})}", status_code=303)


@router.get("/bots")
def bots(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    """Each bot's knowledge base, persona and channel tables (read-only: they come from the bots file)."""
    profiles = [state.assistant.profiles[name] for name in sorted(state.assistant.profiles)]
    return page(request, "console/bots.html", active="bots", csrf=session["csrf"], profiles=profiles)


def _keys_page(request: Request, state: StateDep, csrf: str, created: str | None = None) -> HTMLResponse:
    return page(
        request,
        "console/keys.html",
        active="keys",
        csrf=csrf,
        keys=state.api_keys.list(),
        bots=sorted(state.assistant.profiles),
        created=created,
        when=_when,
    )


@router.get("/keys")
def keys(request: Request, state: StateDep, session: SessionDep) -> HTMLResponse:
    return _keys_page(request, state, session["csrf"])


@router.post("/keys")
def create_key(
    request: Request,
    state: StateDep,
    session: SessionDep,
    csrf: Csrf = "",
    name: Annotated[str, Form(min_length=1, max_length=100)] = "api",
    bots: Annotated[list[str] | None, Form()] = None,
) -> HTMLResponse:
    """Create a key and show it once, on this response only (never stored in plain, never shown again)."""
    check_csrf(csrf, session["csrf"])
    for bot in bots or ():
        _known_bot(state, bot)
    plain, _ = state.api_keys.create(name=name.strip() or "api", bots=tuple(bots or ()))
    return _keys_page(request, state, session["csrf"], created=plain)


KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{8}$")]


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: KeyId, state: StateDep, session: SessionDep, csrf: Csrf = "") -> Response:
    check_csrf(csrf, session["csrf"])
    if not state.api_keys.revoke(key_id):
        raise HTTPException(404, f"no active key with id {key_id!r}")
    return RedirectResponse(f"{PREFIX}/keys", status_code=303)


def install(app: FastAPI, admin_key_set: bool) -> None:
    """The console's routes, only with an admin key; without a session every page redirects to sign-in."""
    if not admin_key_set:
        return
    app.include_router(router)

    @app.exception_handler(SignedOut)
    async def signed_out(request: Request, exc: SignedOut) -> Response:
        if request.headers.get("HX-Request"):  # htmx: the whole page goes to sign-in, not just the swapped part
            return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/signin"})
        if request.method != "GET":
            return HTMLResponse("Signed out: sign in again.", status_code=401)
        return RedirectResponse(f"{PREFIX}/signin", status_code=303)
