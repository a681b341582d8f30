"""The admin console's sign-in, session and CSRF (widget.console has its pages), and how its pages are rendered.

Security: signing in exchanges the key for a session cookie — HttpOnly, Secure over https, SameSite=Strict,
signed with a secret derived from the key (changing the key signs everyone out), expiring after
eight hours (SESSION_SECONDS). Every form carries a CSRF token bound to the session (sign-in: to a short-lived signed
nonce); a POST without the right one is refused with 403. The CSP allows scripts and styles from this server
only, no inline script, and no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from widget.deps import ServerState, StateDep

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


def _serializer(state: ServerState, purpose: str) -> URLSafeTimedSerializer:
    """One per purpose (the salt): a sign-in form's nonce must never pass as a session."""
    key = state.settings.admin_api_key
    if key is None:  # routes are only installed with a key; a settings object without one is a bug
        raise HTTPException(404, "not found")
    secret = hmac.new(key.get_secret_value().encode(), b"switchboard admin console", hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(secret, salt=f"console {purpose}")


def _session(request: Request, state: StateDep) -> dict[str, str]:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise SignedOut
    try:
        session: dict[str, str] = _serializer(state, "session").loads(cookie, max_age=SESSION_SECONDS)
    except BadSignature:
        raise SignedOut from None
    if not isinstance(session, dict) or not isinstance(session.get("csrf"), str):
        raise SignedOut
    return session


SessionDep = Annotated[dict[str, str], Depends(_session)]


def check_csrf(sent: str, expected: str) -> None:
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "invalid or missing CSRF token: reload the page and try again")


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/signin")
def signin_page(request: Request, state: StateDep, error: str | None = None) -> HTMLResponse:
    nonce = _serializer(state, "signin").dumps({"signin": secrets.token_urlsafe(16)})
    return page(request, "console/signin.html", 401 if error else 200, csrf=nonce, error=error)


@router.post("/signin")
def signin(
    request: Request,
    state: StateDep,
    key: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        _serializer(state, "signin").loads(csrf, max_age=SIGNIN_SECONDS)
    except BadSignature:
        raise HTTPException(403, "invalid or missing CSRF token: reload the sign-in page") from None
    admin_key = state.settings.admin_api_key
    if admin_key is None or not hmac.compare_digest(key.encode(), admin_key.get_secret_value().encode()):
        return signin_page(request, state, error="That is not the admin key.")
    response = RedirectResponse(f"{PREFIX}/analytics", status_code=303)
    response.set_cookie(
        COOKIE,
        _serializer(state, "session").dumps({"csrf": secrets.token_urlsafe(32)}),
        max_age=SESSION_SECONDS,
        path=PREFIX,
        httponly=True,
        # https as uvicorn sees it, or as the deployment says it is served (a TLS proxy uvicorn does not trust).
        secure=request.url.scheme == "https" or any(u.startswith("https://") for u in state.settings.public_url),
        samesite="strict",
    )
    return response


@router.post("/signout")
def signout(session: SessionDep, csrf: Annotated[str, Form(max_length=500)] = "") -> Response:
    check_csrf(csrf, session["csrf"])
    response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
