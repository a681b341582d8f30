"""The operator's web page, /admin/ui: sign in with ADMIN_API_KEY, then pages over the admin API's own code.

Server-rendered (Jinja2): every table reads without JavaScript; static/console.js (Chart.js from npm, bundled
by esbuild like the widget) only draws charts from the numbers the page already shows. Off (404) unless
ADMIN_API_KEY is set.

Security: signing in exchanges the key for a session cookie — HttpOnly, Secure over https, SameSite=Strict,
signed with a secret derived from the key (changing the key signs everyone out), expiring after
CONSOLE_SESSION_HOURS. Every form carries a CSRF token bound to the session (sign-in: to a short-lived signed
nonce); a POST without the right one is refused with 403. The CSP allows scripts and styles from this server
only, no inline script, and no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from widget.admin_stats import read_stats
from widget.assets import built_file
from widget.deps import ServerState, StateDep
from widget.stats_out import stats_out

PREFIX = "/admin/ui"
COOKIE = "sb_console"
SESSION_SECONDS = 8 * 3600
SIGNIN_SECONDS = 600  # how long a sign-in form stays valid
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


class SignedOut(Exception):
    """No valid session: pages redirect to the sign-in page."""


def _serializer(state: ServerState) -> URLSafeTimedSerializer:
    key = state.settings.admin_api_key
    if key is None:  # routes are only installed with a key; a settings object without one is a bug
        raise HTTPException(404, "not found")
    secret = hmac.new(key.get_secret_value().encode(), b"switchboard admin console", hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(secret, salt="console")


def _session(request: Request, state: StateDep) -> dict[str, str]:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise SignedOut
    try:
        session: dict[str, str] = _serializer(state).loads(cookie, max_age=SESSION_SECONDS)
    except BadSignature:
        raise SignedOut from None
    return session


SessionDep = Annotated[dict[str, str], Depends(_session)]


def _check_csrf(sent: str, expected: str) -> None:
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "invalid or missing CSRF token: reload the page and try again")


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/signin")
def signin_page(request: Request, state: StateDep, error: str | None = None) -> HTMLResponse:
    nonce = _serializer(state).dumps({"signin": secrets.token_urlsafe(16)})
    return _page(request, "console/signin.html", 401 if error else 200, csrf=nonce, error=error)


@router.post("/signin")
def signin(
    request: Request,
    state: StateDep,
    key: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    serializer = _serializer(state)
    try:
        serializer.loads(csrf, max_age=SIGNIN_SECONDS)
    except BadSignature:
        raise HTTPException(403, "invalid or missing CSRF token: reload the sign-in page") from None
    admin_key = state.settings.admin_api_key
    if admin_key is None or not hmac.compare_digest(key.encode(), admin_key.get_secret_value().encode()):
        return signin_page(request, state, error="That is not the admin key.")
    response = RedirectResponse(f"{PREFIX}/analytics", status_code=303)
    response.set_cookie(
        COOKIE,
        serializer.dumps({"csrf": secrets.token_urlsafe(32)}),
        max_age=SESSION_SECONDS,
        path=PREFIX,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )
    return response


@router.post("/signout")
def signout(session: SessionDep, csrf: Annotated[str, Form(max_length=500)] = "") -> Response:
    _check_csrf(csrf, session["csrf"])
    response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


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
    return _page(
        request,
        "console/analytics.html",
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


def install(app: FastAPI, admin_key_set: bool) -> None:
    """The console's routes, only with an admin key; without a session every page redirects to sign-in."""
    if not admin_key_set:
        return
    app.include_router(router)

    @app.exception_handler(SignedOut)
    async def signed_out(request: Request, exc: SignedOut) -> Response:
        if request.method != "GET":
            return HTMLResponse("Signed out: sign in again.", status_code=401)
        return RedirectResponse(f"{PREFIX}/signin", status_code=303)
