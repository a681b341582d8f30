"""HTTP routes of the web server: widget sessions, streamed chat (SSE), history, feedback, health.

Contract: docs/widget-api.md. Errors are 4xx with a readable `detail`; answers stream as SSE events
sources → delta* → done, or one error event.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from core.answer.assistant import Assistant
from core.answer.privacy import forget_conversation
from core.errors import SwitchboardError
from core.types import Delta, Done, Event, Failed, Message, Sources
from widget.deps import AssistantDep, SessionDep, StateDep, client_ip
from widget.sessions import Session, verify_identity
from widget.settings import WebSettings, web_origin

logger = logging.getLogger(__name__)
router = APIRouter()

ConversationId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]


class UserIdentity(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    hash: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class SessionRequest(BaseModel):
    bot: str = Field("default", max_length=100)
    previous_token: str | None = Field(None, max_length=2000)
    user: UserIdentity | None = None


class ChatRequest(BaseModel):
    message: str
    conversation_id: ConversationId


class FeedbackRequest(BaseModel):
    answer_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=1000)


def _server_origins(settings: WebSettings) -> tuple[str, ...]:
    """Where this server's own pages are: PUBLIC_URL, else its SERVER_HOST:SERVER_PORT address (and in development
    its loopback aliases). Never the request's Host header, which any client, or a DNS-rebinding page, chooses."""
    if settings.public_url:
        return settings.public_url
    hosts = [settings.server_host]
    if settings.environment == "development":
        hosts += ["127.0.0.1", "localhost", "::1"]
    port = settings.server_port
    return tuple(web_origin(f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}") for h in hosts)


def _origin_allowed(state: StateDep, bot: str, origin: str | None) -> bool:
    development = state.settings.environment == "development"
    allowed = state.bots[bot].allowed_origins
    if origin is None:  # not a browser page: tools and tests
        return development
    if origin in _server_origins(state.settings) or origin in allowed:
        return True
    # Development lets a bot without allowed_origins be tried from any local page, never from a site on the web
    # (any page the developer visits could otherwise read the knowledge base through their browser).
    return development and not allowed and _loopback(origin)


def _loopback(origin: str) -> bool:
    host = (urlsplit(origin).hostname or "").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _rate_limit(state: StateDep, kind: str, key: str) -> None:
    wait = await state.limits.hit(kind, key)
    if wait is not None:
        who = "this chat session" if kind == "session" else "your network address"
        raise HTTPException(
            429, f"too many requests from {who}; try again in {wait} seconds", headers={"Retry-After": str(wait)}
        )


async def limit_session(state: StateDep, request: Request, session: Session) -> None:
    """Every call a widget session makes counts against its network address's and its own limits."""
    await _rate_limit(state, "ip", client_ip(request))
    await _rate_limit(state, "session", session.identity)


@router.post("/api/session")
async def create_session(body: SessionRequest, request: Request, state: StateDep) -> dict[str, Any]:
    await _rate_limit(state, "ip", client_ip(request))
    try:
        profile = state.assistant.profile(body.bot)
    except SwitchboardError:
        raise HTTPException(404, f"unknown bot {body.bot!r}") from None
    origin = request.headers.get("origin")
    if not _origin_allowed(state, profile.name, origin):
        raise HTTPException(403, f"this website ({origin or 'unknown origin'}) is not allowed to use this assistant")
    user_id = None
    if body.user is not None:
        secret = state.settings.identity_secret
        if secret is None or not verify_identity(body.user.id, body.user.hash, secret.get_secret_value()):
            raise HTTPException(401, "the user identity could not be verified")
        user_id = body.user.id
    token, session = state.tokens.mint(
        bot=profile.name,
        origin=origin or _server_origins(state.settings)[0],
        user_id=user_id,
        previous=body.previous_token,
    )
    reply = {
        "token": token,
        "expires_in": state.tokens.ttl,
        "bot": state.bots[profile.name].public(profile, state.assistant.voice),
        "max_message_chars": state.settings.max_message_chars,  # the widget's input limit follows the server's
    }
    if user_id is not None:  # a verified user's latest conversation follows them to a new browser
        prefix = session.conversation_key("")
        latest = await state.assistant.latest_conversation("widget", prefix)
        if latest is not None:
            reply["conversation_id"] = latest.removeprefix(prefix)
    return reply


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _encode(event: Event) -> bytes:
    match event:
        case Sources():
            return _sse("sources", {"sources": [asdict(c) for c in event.sources]})
        case Delta():
            return _sse("delta", {"text": event.text})
        case Done():
            citations = [asdict(c) for c in event.citations]
            return _sse(
                "done",
                {
                    "answer_id": event.answer_id,
                    "text": event.text,
                    "citations": citations,
                    "cited": event.cited,
                    "fallback": event.fallback,
                    "curated": event.curated,
                },
            )
        case Failed():
            return _sse("error", {"message": event.reason})


async def _stream(assistant: Assistant, message: Message) -> AsyncIterator[bytes]:
    try:
        async for event in assistant.in_flight.bounded(assistant.answer(message)):
            yield _encode(event)
    except asyncio.CancelledError:
        raise  # the visitor closed the page
    except Exception:
        logger.exception("answer failed for %s", message.conversation_id)
        yield _sse("error", {"message": "Something went wrong while answering. Please try again."})


@router.post("/api/chat")
async def chat(body: ChatRequest, request: Request, session: SessionDep, state: StateDep) -> StreamingResponse:
    text = body.message.strip()
    if not text:
        raise HTTPException(422, "message is empty")
    if len(text) > state.settings.max_message_chars:
        raise HTTPException(422, f"message is longer than {state.settings.max_message_chars} characters")
    await limit_session(state, request, session)
    message = Message(
        text=text,
        channel="widget",
        conversation_id=session.conversation_key(body.conversation_id),
        bot=session.bot,
        user_id=session.user_id,
    )
    return StreamingResponse(
        _stream(state.assistant, message),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/api/history")
async def history(
    request: Request,
    session: SessionDep,
    state: StateDep,
    conversation_id: Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{8,64}$")],
) -> dict[str, Any]:
    await limit_session(state, request, session)
    records = await state.assistant.transcript("widget", session.conversation_key(conversation_id))
    return {
        "messages": [
            {
                "answer_id": r.id,
                "question": r.question,
                "answer": r.answer,
                "citations": [asdict(c) for c in r.citations],
                "cited": r.cited,
                "fallback": r.fallback,
            }
            for r in records
        ]
    }


@router.delete("/api/conversations/{conversation_id}", status_code=204)
async def forget(conversation_id: ConversationId, request: Request, session: SessionDep, state: StateDep) -> Response:
    await limit_session(state, request, session)
    # Gone from every store: the model's memory, the transcript /api/history and /api/session hand back, feedback.
    await forget_conversation(state.assistant, "widget", session.conversation_key(conversation_id))
    return Response(status_code=204)


@router.post("/api/feedback", status_code=204)
async def feedback(body: FeedbackRequest, request: Request, session: SessionDep, state: StateDep) -> Response:
    await limit_session(state, request, session)
    own = ("widget", session.conversation_key(""))
    if not await state.assistant.rate(body.answer_id, body.rating, body.comment, within=own):
        raise HTTPException(404, "no such answer in this session")
    return Response(status_code=204)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(assistant: AssistantDep, response: Response) -> dict[str, str]:
    ready, checks = await assistant.readiness()
    response.status_code = 200 if ready else 503
    return {"status": "ready" if ready else "not ready", **checks}
