"""MCP server (the official `mcp` SDK) over the knowledge bases: tools `search_knowledge` and `ask`, and the
resource `switchboard://kbs` listing the KBs with document counts.

Which KBs a caller reaches: the KBs of the bots it may use — every bot over stdio (the local user runs the
process with the configuration's access anyway), the key's bots over HTTP (the API keys of /v1). Bots are taken
in order, the default bot first, then the bots file's order: a call without `kb` uses the first bot's KB, and
`ask` answers as the first bot serving the KB asked for (its persona and prompt). `switchboard mcp --kb X`
makes X the default bot's KB. A KB no bot serves is not exposed, as in every other channel.

Over HTTP (`/mcp`) the transport is stateless JSON: each POST is one self-contained exchange, so there is no
session affinity (replicas work behind any load balancer), and every request passes the API-key gate of /v1
(revocation is at once; per-key limits; failed keys limited per address). There is no server-initiated stream:
GET answers 405, as the transport's specification provides.
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from importlib import metadata
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from core.answer.assistant import STORE_DOWN, Assistant
from core.answer.citations import final_text
from core.answer.collect import collect
from core.answer.profiles import BotProfile
from core.errors import AnswerFailed, KBNotFound, SwitchboardError
from core.types import Citation, Message, shown_source
from widget.api_auth import KeyRefused, authenticate
from widget.apikeys import ApiKey
from widget.deps import client_ip, get_state
from widget.settings import WebSettings

logger = logging.getLogger(__name__)

KBS_URI = "switchboard://kbs"
INSTRUCTIONS = (
    "Answers and passages from the documentation indexed in Switchboard. Read the resource switchboard://kbs "
    "for the knowledge bases you can use; every tool takes an optional `kb` (default: the first one listed)."
)
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)

# Who is calling: the API key over HTTP, None over stdio (every bot). Set per request by the transport; it has
# no default on purpose, so a call that somehow bypassed the key check fails instead of reaching every KB.
_caller: ContextVar[ApiKey | None] = ContextVar("switchboard_mcp_caller")

KBArg = Annotated[
    str | None, Field(description=f"Knowledge base name (see {KBS_URI}); default: the first one listed there.")
]


class Passage(BaseModel):
    title: str
    section: str = Field(description="Heading trail inside the document; empty at its top.")
    source: str = Field(description="URL of the document, or its file path within the folder that was ingested.")
    score: float = Field(description="Hybrid (keyword + vector) score, normalised per query: for ranking only.")
    text: str


class SearchResult(BaseModel):
    kb: str
    query: str
    passages: list[Passage]


class AnswerResult(BaseModel):
    kb: str
    bot: str
    answer: str = Field(description="Markdown; [n] markers point at `sources`.")
    sources: list[Citation]
    cited: bool = Field(description="False: the answer cites nothing and `sources` are the passages consulted.")
    fallback: bool = Field(description="True: the model failed and the answer quotes the best passages.")


def _reachable(assistant: Assistant) -> dict[str, BotProfile]:
    """Each KB the caller may use, with the bot that answers for it (the first such bot, default first)."""
    key = _caller.get()
    kbs: dict[str, BotProfile] = {}
    for name, profile in assistant.profiles.items():  # load_profiles puts the default bot first
        if key is None or key.allows(name):
            kbs.setdefault(profile.kb, profile)
    return kbs


def _bot_for(assistant: Assistant, kb: str | None) -> BotProfile:
    kbs = _reachable(assistant)
    if not kbs:  # a key scoped to bots that were since removed from the bots file
        raise ToolError("this API key may use none of this server's bots")
    if kb is None:
        return next(iter(kbs.values()))
    if kb not in kbs:
        raise ToolError(f"unknown knowledge base {kb!r}; available: {', '.join(kbs)}")
    return kbs[kb]


def _text(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise ToolError(f"the {what} is empty")
    if len(text) > limit:
        raise ToolError(f"the {what} is longer than {limit} characters")
    return text


async def _require_kb(assistant: Assistant, kb: str) -> None:
    """A KB a bot serves but nobody ingested: say so, as `search_knowledge` does, rather than "found nothing"."""
    try:
        await assistant.knowledge.counts(kb)
    except KBNotFound as exc:
        raise ToolError(str(exc)) from None
    except SwitchboardError:
        logger.exception("MCP: checking KB %s failed", kb)
        raise ToolError(STORE_DOWN) from None


def _invalid_arguments(error: ValidationError) -> str:
    """One readable line instead of pydantic's report (which names internal models and links to its docs)."""
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in error.errors()]
    return "invalid arguments: " + "; ".join(problems)


class _Server(MCPServer[Any]):
    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(_invalid_arguments(exc.__cause__)) from exc.__cause__
            raise


def _described(tool: Callable[..., Any]) -> Callable[..., Any]:
    """Tool descriptions without the docstring's source indentation (the SDK sends __doc__ as it is)."""
    tool.__doc__ = inspect.cleandoc(tool.__doc__ or "")
    return tool


def build_server(assistant: Assistant, settings: WebSettings) -> MCPServer[Any]:
    """The tools and the resource over `assistant`; `settings`: what it was opened with."""
    server = _Server(
        "switchboard", version=metadata.version("switchboard"), instructions=INSTRUCTIONS, log_level="WARNING"
    )

    @server.tool(annotations=_READ_ONLY)
    @_described
    async def search_knowledge(
        query: Annotated[str, Field(description="What to look for: a question or keywords.")],
        kb: KBArg = None,
        k: Annotated[int, Field(ge=1, le=50, description="How many passages to return.")] = settings.search_top_k,
    ) -> SearchResult:
        """Search a knowledge base (keywords and meaning) and return the best passages, each with its document
        title, section, source and score. Use it to read the documentation itself; use `ask` for an answer."""
        text = _text(query, "query", settings.max_message_chars)
        kb_name = _bot_for(assistant, kb).kb
        try:
            found = await assistant.search(kb_name, text, top_k=k)
        except KBNotFound as exc:
            raise ToolError(str(exc)) from None
        except SwitchboardError:
            logger.exception("MCP search in %s failed", kb_name)
            raise ToolError(STORE_DOWN) from None
        passages = [
            Passage(
                title=s.title, section=s.section, source=shown_source(s.source, s.origin), score=s.score, text=s.text
            )
            for s in found
        ]
        return SearchResult(kb=kb_name, query=text, passages=passages)

    @server.tool(annotations=_READ_ONLY)
    @_described
    async def ask(
        question: Annotated[str, Field(description="A self-contained question (no conversation is kept).")],
        kb: KBArg = None,
    ) -> Annotated[CallToolResult, AnswerResult]:
        """Answer a question from a knowledge base, with [n] citations of its sources (title, section, source).
        It says so when the documents do not cover the question."""
        text = _text(question, "question", settings.max_message_chars)
        bot = _bot_for(assistant, kb)
        await _require_kb(assistant, bot.kb)
        key = _caller.get()
        conversation = f"{key.id}:{uuid.uuid4().hex}" if key else uuid.uuid4().hex  # the answer log shows the key
        message = Message(text=text, channel="mcp", conversation_id=conversation, bot=bot.name, history=())
        try:
            done = await collect(assistant.in_flight.bounded(assistant.answer(message)))
        except AnswerFailed as failed:
            raise ToolError(str(failed)) from None
        result = AnswerResult(
            kb=bot.kb,
            bot=bot.name,
            answer=done.text,
            sources=list(done.citations),
            cited=done.cited,
            fallback=done.fallback,
        )
        return CallToolResult(
            content=[TextContent(type="text", text=final_text(done))],
            structured_content=result.model_dump(mode="json"),
        )

    @server.resource(
        KBS_URI,
        name="knowledge-bases",
        description="The knowledge bases you can search, with document and chunk counts; the first is the default.",
        mime_type="application/json",
    )
    async def knowledge_bases() -> str:
        rows = []
        for kb, bot in _reachable(assistant).items():
            try:
                documents, chunks = await assistant.knowledge.counts(kb)
            except KBNotFound:  # served by a bot but not ingested yet
                documents, chunks = 0, 0
            except SwitchboardError as exc:
                logger.exception("MCP: counting the documents of %s failed", kb)
                raise ResourceError(STORE_DOWN) from exc
            rows.append({"name": kb, "documents": documents, "chunks": chunks, "bot": bot.name})
        return json.dumps({"knowledge_bases": rows}, ensure_ascii=False, indent=2)

    return server


async def serve_stdio(assistant: Assistant, settings: WebSettings) -> None:
    """Serve over stdin/stdout until the client closes them; the local user reaches every bot's KB."""
    _caller.set(None)
    await build_server(assistant, settings).run_stdio_async()


def _refusal(status: int, error: str, description: str, headers: dict[str, str]) -> JSONResponse:
    """RFC 6750's shape, as MCP clients expect from a protected resource."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


class McpEndpoint:
    """`/mcp`: the API key check and rate limits of /v1, then the SDK's streamable HTTP transport."""

    def __init__(self) -> None:
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def serve(self, assistant: Assistant, settings: WebSettings) -> AsyncIterator[None]:
        """Run the transport while the app runs (in its lifespan, once the assistant is open)."""
        server = build_server(assistant, settings)
        # Called for the session manager it creates; the route is ours (with the key check), not its app's.
        server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            max_request_body_size=settings.api_max_body_bytes,
            # Host/Origin checks protect credential-less local servers from DNS rebinding; this endpoint needs
            # an API key that a rebinding page cannot have, and must answer under whatever host it is deployed.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        async with server.session_manager.run():
            self._manager = server.session_manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._manager is None:
            raise RuntimeError("the MCP endpoint runs only inside the app's lifespan")
        request = Request(scope, receive)
        if request.method != "POST":
            # Stateless: no session to stream to or to delete. The legacy transport would hold a GET open forever.
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        state = get_state(request)
        try:
            key = await authenticate(state, request.headers.get("authorization"), client_ip(request))
        except KeyRefused as refused:
            await _refused(refused)(scope, receive, send)
            return
        # Stateless mode handles the request in this task or in tasks it starts, which inherit the variable.
        token = _caller.set(key)
        try:
            await self._manager.handle_request(scope, receive, send)
        finally:
            _caller.reset(token)


def _refused(refused: KeyRefused) -> JSONResponse:
    """RFC 6750's shape, as MCP clients expect from a protected resource."""
    if refused.status == 429:
        return _refusal(429, "rate_limited", refused.reason, {"Retry-After": str(refused.retry_after)})
    if refused.missing:
        reason = "missing API key: send `Authorization: Bearer sb-...` (create one with `switchboard keys create`)"
        return _refusal(401, "invalid_token", reason, {"WWW-Authenticate": "Bearer"})
    return _refusal(401, "invalid_token", refused.reason, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
