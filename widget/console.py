"""The operator's web page, /admin/ui: sign in with ADMIN_API_KEY (widget.console_auth), then pages over the
kit's own code: Analytics (the stats of GET /admin/stats), Feedback (the 👎 queue of GET /admin/feedback),
Conversations (searchable, paged, and each one's transcript), Bots (read-only), API keys (the store
`switchboard keys` uses); Knowledge bases are widget.console_kbs's, curated answers widget.console_curated's.
Every POST checks the session's CSRF token first.

Server-rendered (Jinja2): every table reads without JavaScript; static/console.js (Chart.js from npm, bundled
by esbuild like the widget) only draws charts from the numbers the page already shows. Off (404) unless
ADMIN_API_KEY is set.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from core.answer import privacy
from core.answer.conversations import ConversationQuery
from widget import console_curated, console_kbs  # noqa: F401  (their pages are on the console's router, below)
from widget.admin import _known_bot
from widget.admin_stats import checked_period, read_stats
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
    stats = stats_out(await read_stats(state, since, bot or None, gaps=False))  # gaps: analytics_gaps
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


@router.get("/analytics/gaps")
async def analytics_gaps(
    request: Request, state: StateDep, session: SessionDep, since: str = "7d", bot: str = ""
) -> HTMLResponse:
    """The period's knowledge gaps, which the Analytics page loads after it is shown (clustering takes longest)."""
    gaps = await state.assistant.gaps(period=checked_period(state, since, bot or None), bot=bot or None)
    return page(request, "console/gaps.html", active="analytics", csrf=session["csrf"], gaps=gaps, since=since, bot=bot)


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


PER_PAGE = 50
Day = Annotated[str, Query(pattern=r"^(\d{4}-\d{2}-\d{2})?$", description="YYYY-MM-DD (UTC)")]


def _day(text: str, name: str) -> float | None:
    """The start of a UTC day, or None for no bound; a date that does not exist (2026-02-30) is a 422."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise HTTPException(422, f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None


@router.get("/conversations")
async def conversations(
    request: Request,
    state: StateDep,
    session: SessionDep,
    bot: str = "",
    q: Annotated[str, Query(max_length=200)] = "",
    since: Day = "",
    until: Day = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """A bot's conversations, the most recently active first, PER_PAGE a page; searchable by text in its
    questions and answers and by a date range (both days included)."""
    bots = sorted(state.assistant.profiles)
    bot = bot or bots[0]
    _known_bot(state, bot)
    start, end = _day(since, "since"), _day(until, "until")
    end = end + 86400 if end is not None else None  # through the end of that day
    if start is not None and end is not None and end <= start:
        raise HTTPException(422, "until: the range ends before it starts")
    query = ConversationQuery(
        bot=bot, text=q.strip() or None, since=start, until=end, offset=(page_no - 1) * PER_PAGE, limit=PER_PAGE + 1
    )
    found = await state.assistant.conversations(query)
    filters = {"bot": bot, "q": q, "since": since, "until": until}
    return page(
        request,
        "console/conversations.html",
        active="conversations",
        csrf=session["csrf"],
        conversations=found[:PER_PAGE],
        bot=bot,
        bots=bots,
        filters=filters,
        page_no=page_no,
        previous=urlencode({**filters, "page": page_no - 1}) if page_no > 1 else None,
        next=urlencode({**filters, "page": page_no + 1}) if len(found) > PER_PAGE else None,
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
