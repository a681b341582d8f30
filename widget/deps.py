"""FastAPI dependencies as Annotated aliases: the assistant, server state, and the caller's widget session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from core.answer.assistant import Assistant
from core.ingest.lease import Leases
from core.ingest.registry import Registry
from core.knowledge import Knowledge
from widget.apikeys import ApiKeys
from widget.embeds import WidgetBot
from widget.jobs import Jobs
from widget.ratelimit import RateLimits
from widget.sessions import Session, SessionTokens, TokenError
from widget.settings import WebSettings


@dataclass(frozen=True, kw_only=True)
class ServerState:
    settings: WebSettings
    assistant: Assistant
    tokens: SessionTokens
    limits: RateLimits
    bots: dict[str, WidgetBot]
    api_keys: ApiKeys
    jobs: Jobs
    sources: Registry  # each KB's registered sources (the admin API's /sources)
    leases: Leases  # who syncs each source now: this server's schedule, the admin API's syncs, other processes


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.switchboard
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


def get_assistant(state: StateDep) -> Assistant:
    return state.assistant


AssistantDep = Annotated[Assistant, Depends(get_assistant)]


def get_knowledge(state: StateDep) -> Knowledge:
    return state.assistant.knowledge


KnowledgeDep = Annotated[Knowledge, Depends(get_knowledge)]


def bearer(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer ...` header, if there is one (the scheme is case-insensitive,
    RFC 9110 §11.1)."""
    scheme, _, credential = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def get_session(request: Request, state: StateDep, authorization: Annotated[str | None, Header()] = None) -> Session:
    token = bearer(authorization)
    if token is None:
        raise HTTPException(401, "missing session token: get one from POST /api/session")
    try:
        session = state.tokens.verify(token)
    except TokenError as exc:
        raise HTTPException(401, str(exc)) from exc
    origin = request.headers.get("origin")
    if origin is not None and origin != session.origin:
        raise HTTPException(403, "this session token was issued to another website")
    return session


SessionDep = Annotated[Session, Depends(get_session)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
