"""OpenAI-compatible API: `GET /v1/models` and `POST /v1/chat/completions` (streaming and not) over the bots.

Each bot is a model id. Stateless by default: the `messages` array is the conversation (the last user message
is the question, earlier user/assistant turns are history); send `X-Switchboard-Conversation: <id>` to keep the
conversation server-side instead. Client system messages are ignored: the bot's persona and prompt govern.
The answer keeps its `[n]` markers; sources travel in the extra `switchboard` field of the completion and of
the final chunk. Token counts in `usage` are estimates (about four characters a token).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from core.apikeys import ApiKey
from core.types import Delta, Done, Event, Failed, Generation, Message, Turn
from widget.deps import StateDep, bearer, client_ip

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible API"])
CONVERSATION_HEADER = "X-Switchboard-Conversation"


class OpenAIError(Exception):
    """Rendered as OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """Parameters not listed here are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=100)
    messages: list[InputMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    stop: str | list[str] | None = None
    user: str | None = Field(None, max_length=256)
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    logprobs: bool | None = None


async def api_key(state: StateDep, request: Request, authorization: Annotated[str | None, Header()] = None) -> ApiKey:
    plain = bearer(authorization)
    if plain is None:
        raise OpenAIError(401, "Missing API key: send `Authorization: Bearer sb-...`.", code="invalid_api_key")
    key = await state.api_keys.verify(plain)
    if key is None:
        raise OpenAIError(401, "Incorrect or revoked API key provided.", code="invalid_api_key")
    wait = await state.limits.hit("key", key.id) or await state.limits.hit("ip", client_ip(request))
    if wait is not None:
        raise OpenAIError(
            429,
            f"Rate limit reached; retry in {wait} seconds.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(wait)},
        )
    return key


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]


@router.get("/models")
def models(key: ApiKeyDep, state: StateDep) -> dict[str, Any]:
    names = [name for name in sorted(state.assistant.profiles) if key.allows(name)]
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "switchboard"} for n in names],
    }


def _text(message: InputMessage) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise OpenAIError(
                400,
                f"Content parts of type {part.type!r} are not supported; send text.",
                param="messages",
                code="unsupported_content",
            )
        parts.append(part.text)
    return "\n".join(parts)


def _refuse_unsupported(body: CompletionRequest) -> None:
    if body.n not in (None, 1):
        raise OpenAIError(400, "Only n=1 is supported.", param="n", code="unsupported_parameter")
    if body.tools or body.functions:
        raise OpenAIError(
            400, "Tools and function calling are not supported.", param="tools", code="unsupported_parameter"
        )
    if body.logprobs:
        raise OpenAIError(400, "logprobs are not supported.", param="logprobs", code="unsupported_parameter")


def _message(body: CompletionRequest, key: ApiKey, conversation: str | None, max_chars: int) -> Message:
    turns = [(m.role, _text(m)) for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
        raise OpenAIError(400, "The last message must be a non-empty user message.", param="messages")
    question = turns[-1][1].strip()
    if len(question) > max_chars:
        raise OpenAIError(
            400, f"The question is longer than {max_chars} characters.", param="messages", code="message_too_long"
        )
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    history = None if conversation else tuple(Turn(role=role, content=text) for role, text in turns[:-1])
    return Message(
        text=question,
        channel="api",
        conversation_id=f"{key.id}:{conversation or uuid.uuid4().hex}",  # scoped to the key
        bot=body.model,
        user_id=body.user,
        history=history,
        generation=Generation(
            temperature=body.temperature, max_tokens=body.max_completion_tokens or body.max_tokens, stop=stop
        ),
    )


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _extra(done: Done) -> dict[str, Any]:
    return {
        "sources": [asdict(c) for c in done.citations],
        "cited": done.cited,
        "fallback": done.fallback,
        "answer_id": done.answer_id,
    }


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: CompletionRequest,
    key: ApiKeyDep,
    state: StateDep,
    conversation: Annotated[str | None, Header(alias=CONVERSATION_HEADER, pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
) -> Response:
    _refuse_unsupported(body)
    if body.model not in state.assistant.profiles or not key.allows(body.model):
        raise OpenAIError(
            404,
            f"The model {body.model!r} does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    message = _message(body, key, conversation, state.settings.max_message_chars)
    prompt_tokens = sum(_tokens(_text(m)) for m in body.messages)  # before answering: _text refuses bad parts
    events = state.assistant.in_flight.bounded(state.assistant.answer(message))
    first = await anext(events)
    if isinstance(first, Failed):
        raise OpenAIError(503, first.reason, type="server_error", code="knowledge_base_unavailable")
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _chunks(events, completion_id, created, body.model, prompt_tokens, usage)
        return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    done = await _last(events)
    completion = _tokens(done.text)
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
            "switchboard": _extra(done),
        }
    )


async def _last(events: AsyncIterator[Event]) -> Done:
    async for event in events:
        if isinstance(event, Done):
            return event
    raise OpenAIError(503, "The answer ended unexpectedly.", type="server_error")


async def _chunks(
    events: AsyncIterator[Event], completion_id: str, created: int, model: str, prompt_tokens: int, usage: bool
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    async for event in events:
        if isinstance(event, Delta):
            yield chunk({"content": event.text})
        elif isinstance(event, Done):
            yield chunk({}, "stop", switchboard=_extra(event))
            if usage:
                completion = _tokens(event.text)
                totals = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion,
                }
                payload = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": totals,
                }
                yield f"data: {json.dumps(payload)}\n\n".encode()
        elif isinstance(event, Failed):  # mid-stream, as OpenAI reports it: the SDKs raise APIError
            error = {"message": event.reason, "type": "server_error", "param": None, "code": None}
            yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def install(app: Any) -> None:
    """Mount the router and render its errors (and malformed requests to it) in OpenAI's shape."""
    app.include_router(router)

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()
