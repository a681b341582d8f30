"""OpenAI-compatible API: `GET /v1/models[/{id}]` and `POST /v1/chat/completions` (streaming and not) over the bots.

Each bot is a model id. Stateless by default: the `messages` array is the conversation (the last user message
is the question, earlier user/assistant turns are history); send `X-Switchboard-Conversation: <id>` to keep the
conversation server-side instead. Client system messages are ignored: the bot's persona and prompt govern.
The answer keeps its `[n]` markers; sources travel as OpenAI `url_citation` annotations of the message (of the
final chunk's delta when streaming) and, with more detail, in the extra `switchboard` field. `usage` counts the
prompt the model was actually sent (retrieved passages included): the model server's count when it reports one,
else an estimate (about four characters a token). Errors, unknown /v1 paths included, take OpenAI's shape.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from core.answer.collect import collect
from core.answer.llm import estimate_tokens
from core.answer.prompt import citation_spans
from core.errors import AnswerFailed
from core.types import Delta, Done, Event, Failed, Generation, Message, Turn, Usage, heading
from widget.api_auth import KeyRefused, authenticate
from widget.apikeys import ApiKey
from widget.deps import StateDep, client_ip

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

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _require_unicode(*texts: str | None) -> None:
    # JSON can escape a lone surrogate ("\\ud800"); Python decodes it, but no UTF-8 encoder (the model's client,
    # the answer log) accepts it later on.
    for text in texts:
        try:
            (text or "").encode()
        except UnicodeEncodeError:
            raise ValueError("the text contains a lone UTF-16 surrogate, which is not valid Unicode") from None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    @field_validator("content")
    @classmethod
    def _unicode_content(cls, content: str | list[ContentPart] | None) -> str | list[ContentPart] | None:
        _require_unicode(*([content] if isinstance(content, str) else [part.text for part in content or ()]))
        return content


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class CompletionRequest(BaseModel):
    """Parameters not listed here are accepted and ignored. `max_tokens` above LLM_MAX_TOKENS is lowered to it."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=100)
    messages: list[InputMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    user: str | None = Field(None, max_length=256)
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    logprobs: bool | None = None
    response_format: ResponseFormat | None = None

    @field_validator("stop")  # (length-constrained strings such as `user` are checked by pydantic itself)
    @classmethod
    def _unicode_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        _require_unicode(*([stop] if isinstance(stop, str | None) else stop))
        return stop


async def api_key(state: StateDep, request: Request, authorization: Annotated[str | None, Header()] = None) -> ApiKey:
    try:
        return await authenticate(state, authorization, client_ip(request))
    except KeyRefused as refused:
        if refused.status == 429:
            message = f"{refused.reason.capitalize()}."
            headers = {"Retry-After": str(refused.retry_after)}
            raise OpenAIError(429, message, type="requests", code="rate_limit_exceeded", headers=headers) from None
        message = (
            "Missing API key: send `Authorization: Bearer sb-...`."
            if refused.missing
            else "Incorrect or revoked API key provided."
        )
        raise OpenAIError(401, message, code="invalid_api_key") from None


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "switchboard"}


def _require_model(state: StateDep, key: ApiKey, name: str) -> None:
    if name not in state.assistant.profiles or not key.allows(name):
        raise OpenAIError(
            404,
            f"The model {name!r} does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )


@router.get("/models")
def models(key: ApiKeyDep, state: StateDep) -> dict[str, Any]:
    names = [name for name in sorted(state.assistant.profiles) if key.allows(name)]
    return {"object": "list", "data": [_model(n) for n in names]}


@router.get("/models/{model_id}")
def model(model_id: str, key: ApiKeyDep, state: StateDep) -> dict[str, Any]:
    _require_model(state, key, model_id)
    return _model(model_id)


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
    if body.response_format is not None and body.response_format.type != "text":
        raise OpenAIError(
            400,
            f"response_format {body.response_format.type!r} is not supported: the assistant answers in Markdown "
            "prose with [n] citations of its sources.",
            param="response_format",
            code="unsupported_parameter",
        )


def _search_text(question: str, max_chars: int) -> str | None:
    """What to search for when the question is longer than MAX_MESSAGE_CHARS (a chat UI's title request, a
    pasted log): its end, where the question usually is, from a word boundary. None: the question itself."""
    if len(question) <= max_chars:
        return None
    tail = question[-max_chars:]
    _, space, words = tail.partition(" ")
    return words if space and words.strip() else tail


def _message(body: CompletionRequest, key: ApiKey, conversation: str | None, max_chars: int) -> Message:
    turns = [(m.role, _text(m)) for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
        raise OpenAIError(400, "The last message must be a non-empty user message.", param="messages")
    question = turns[-1][1].strip()
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    history = None if conversation else tuple(Turn(role=role, content=text) for role, text in turns[:-1])
    return Message(
        text=question,
        query=_search_text(question, max_chars),
        channel="api",
        conversation_id=f"{key.id}:{conversation or uuid.uuid4().hex}",  # scoped to the key
        bot=body.model,
        user_id=body.user,
        history=history,
        generation=Generation(
            temperature=body.temperature, max_tokens=body.max_completion_tokens or body.max_tokens, stop=stop
        ),
    )


def _annotations(done: Done) -> list[dict[str, Any]]:
    """The sources in OpenAI's own slot, for clients that drop unknown fields: each cited source spans its first
    `[n]` marker; sources consulted but not cited span the whole answer."""
    spans = citation_spans(done.text) if done.cited else {}
    annotations = []
    for c in done.citations:
        start, end = spans.get(c.n, (0, len(done.text)))
        citation = {"url": c.source, "title": heading(c.title, c.section), "start_index": start, "end_index": end}
        annotations.append({"type": "url_citation", "url_citation": citation})
    return annotations


def _extra(done: Done) -> dict[str, Any]:
    return {
        "sources": [asdict(c) for c in done.citations],
        "cited": done.cited,
        "fallback": done.fallback,
        "curated": done.curated,
        "answer_id": done.answer_id,
    }


def _usage(done: Done) -> dict[str, int]:
    # No usage: no model call made this answer (nothing relevant was found, or the passages were quoted).
    usage = done.usage or Usage(prompt_tokens=0, completion_tokens=estimate_tokens(done.text))
    total = usage.prompt_tokens + usage.completion_tokens
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens, "total_tokens": total}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: CompletionRequest,
    key: ApiKeyDep,
    state: StateDep,
    conversation: Annotated[str | None, Header(alias=CONVERSATION_HEADER, pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None,
) -> Response:
    _refuse_unsupported(body)
    _require_model(state, key, body.model)
    message = _message(body, key, conversation, state.settings.max_message_chars)
    events = state.assistant.in_flight.bounded(state.assistant.answer(message))
    first = await anext(events)
    if isinstance(first, Failed):
        raise OpenAIError(503, first.reason, type="server_error", code="knowledge_base_unavailable")
    # What every object of one completion carries: the whole completion, or each chunk of its stream.
    head: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
    }
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        chunk_head = {**head, "object": "chat.completion.chunk"}
        return StreamingResponse(
            _chunks(events, chunk_head, usage), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    try:
        done = await collect(events)
    except AnswerFailed as failed:
        raise OpenAIError(503, str(failed), type="server_error") from None
    message_out = {"role": "assistant", "content": done.text, "refusal": None, "annotations": _annotations(done)}
    choice = {"index": 0, "message": message_out, "finish_reason": done.finish_reason, "logprobs": None}
    return JSONResponse({**head, "choices": [choice], "usage": _usage(done), "switchboard": _extra(done)})


def _data(payload: dict[str, Any]) -> bytes:
    """One server-sent event of the stream, as OpenAI frames them."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def _chunks(events: AsyncIterator[Event], head: dict[str, Any], usage: bool) -> AsyncIterator[bytes]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return _data({**head, "choices": choices, **extra})

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]

    yield chunk(choice({"role": "assistant", "content": ""}))
    async for event in events:
        if isinstance(event, Delta):
            yield chunk(choice({"content": event.text}))
        elif isinstance(event, Done):
            yield chunk(choice({"annotations": _annotations(event)}, event.finish_reason), switchboard=_extra(event))
            if usage:
                yield chunk([], usage=_usage(event))
        elif isinstance(event, Failed):  # mid-stream, as OpenAI reports it: the SDKs raise APIError
            yield _data(OpenAIError(503, event.reason, type="server_error").body())
    yield b"data: [DONE]\n\n"


def is_api_path(path: str) -> bool:
    """Where errors take OpenAI's shape, as its SDKs expect."""
    return path == "/v1" or path.startswith("/v1/")


def install(app: Any) -> None:
    """Mount the router and render its errors (and malformed requests to it) in OpenAI's shape."""
    app.include_router(router)

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(HTTPException)
    async def unknown_route(request: Request, exc: HTTPException) -> Response:
        """Unknown /v1 paths and methods (404, 405) in OpenAI's shape, as its SDKs expect; elsewhere FastAPI's."""
        if not is_api_path(request.url.path):
            return await http_exception_handler(request, exc)
        message = f"Invalid URL ({request.method} {request.url.path})" if exc.status_code == 404 else exc.detail
        return OpenAIError(exc.status_code, message, headers=dict(exc.headers or {})).response()
