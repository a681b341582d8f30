"""create_app(): the web server. The lifespan opens the assistant (Weaviate, embedder, LLM) once and closes it.

CORS answers every origin because nothing here rides on cookies (sessions are bearer tokens) and because the
per-bot origin policy is enforced by the session endpoint itself, which lets a refused page show *why*.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.answer.assistant import Assistant, open_assistant
from core.answer.profiles import load_tables
from core.errors import StateError
from core.ingest.lease import create_leases
from core.ingest.registry import Registry
from core.ingest.schedule import SyncScheduler
from core.shared_state import SharedState, open_redis
from widget import admin, admin_curated, admin_stats, console, metrics, openai_api
from widget.apikeys import ApiKeys
from widget.assets import STATIC, built_file, install_docs
from widget.deps import ServerState
from widget.embeds import WidgetBot
from widget.jobs import Jobs, create_job_store
from widget.mcp_server import McpEndpoint
from widget.openai_api import OpenAIError, is_api_path
from widget.ratelimit import create_rate_limits
from widget.routes import router
from widget.sessions import SessionTokens, signing_secret
from widget.settings import WebSettings
from widget.voice import TRANSCRIBE_PATH
from widget.voice import router as voice_router
from widget.webhooks import Webhooks

logger = logging.getLogger(__name__)
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _error(path: str, api: OpenAIError, detail: str, status: int | None = None) -> JSONResponse:
    """The one decision of an error's shape: OpenAI's under /v1, FastAPI's `{"detail": ...}` elsewhere (with
    `status` when it differs from the API's, and the same headers)."""
    if is_api_path(path):
        return api.response()
    return JSONResponse({"detail": detail}, status_code=status or api.status, headers=api.headers)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for bodies over the limit, whether announced by Content-Length or streamed in chunks.

    `wider` gives the paths matching a regular expression another limit (uploads)."""

    def __init__(self, app: ASGIApp, max_bytes: int, wider: Mapping[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.wider = [(re.compile(pattern), limit) for pattern, limit in (wider or {}).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next((n for pattern, n in self.wider if pattern.fullmatch(scope["path"])), self.max_bytes)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._reject(scope, receive, send, limit)
            return
        seen = 0
        exceeded = started = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                exceeded = True
                raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            # The app may catch _TooLarge itself (FastAPI turns body errors into a 400): drop its reply then.
            nonlocal started
            if exceeded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with suppress(_TooLarge):
            await self.app(scope, counted, guarded)
        if exceeded and not started:
            await self._reject(scope, receive, send, limit)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        detail = f"request body too large (the limit is {limit} bytes)"
        response = _error(scope["path"], OpenAIError(413, detail, code="request_too_large"), detail)
        await response(scope, receive, send)


class SecurityHeaders:
    """Every response, API answers and errors included: no MIME sniffing, no Referer sent from our pages."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    settings: WebSettings,
    prepare: Callable[[Assistant], Awaitable[None]] | None = None,
    *,
    webhooks: Webhooks | None = None,
) -> FastAPI:
    """`prepare` runs once the assistant is open, before serving (the demo ingests the sample docs there).
    `webhooks`: the chat platforms served over HTTP (none without), built before this so that a platform's
    missing credential fails before anything starts."""
    mcp = McpEndpoint()
    webhooks = webhooks if webhooks is not None else Webhooks()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_redis(settings) as redis,  # the process's shared state: the assistant's, and limits, jobs, secret
            open_assistant(settings, redis=redis) as assistant,
            mcp.serve(assistant, settings),
        ):
            if prepare is not None:
                await prepare(assistant)
            bots = load_tables(assistant.profiles, "widget", WidgetBot)
            jobs = Jobs(settings, create_job_store(settings, redis))
            app.state.switchboard = ServerState(
                settings=settings,
                assistant=assistant,
                tokens=SessionTokens(
                    await signing_secret(settings, redis),
                    settings.session_ttl,
                    settings.session_renew_days * 86400,
                ),
                limits=create_rate_limits(settings, redis),
                bots=bots,
                api_keys=ApiKeys(settings.data_dir / "api-keys.sqlite3"),
                jobs=jobs,
                sources=Registry.for_settings(settings),
            )
            logger.info("serving bots %s", ", ".join(bots))
            try:
                async with AsyncExitStack() as running:
                    shared = SharedState(settings.data_dir, redis)
                    await running.enter_async_context(webhooks.serve(assistant, shared))  # the chat platforms' clients
                    if settings.sync_schedule:  # due syncs of registered sources; stopped before the store closes
                        knowledge = assistant.knowledge
                        scheduler = SyncScheduler(
                            app.state.switchboard.sources,
                            knowledge.store,
                            knowledge.embedder,
                            create_leases(settings, redis),
                            settings=settings,
                        )
                        await running.enter_async_context(scheduler.running())
                    yield
            finally:
                # Chat-bot webhook answers run after their request returned: uvicorn did not wait for them.
                await assistant.drain()
                await jobs.close()  # before the store they write to closes

    # /docs and /openapi.json map every endpoint: on in development, in production only if API_DOCS says so.
    docs = settings.api_docs if settings.api_docs is not None else settings.environment == "development"
    app = FastAPI(
        title="Switchboard",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # install_docs serves Swagger UI's files itself, not from a CDN
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    if docs:
        install_docs(app)
    app.include_router(router)
    app.include_router(voice_router)
    app.include_router(admin.api())
    app.include_router(admin_curated.router)
    app.include_router(admin_stats.router)
    console.install(app, settings.admin_api_key is not None)
    openai_api.install(app)
    metrics.install(app, settings)
    app.router.routes.append(Route("/mcp", mcp, include_in_schema=False))
    webhooks.install(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "DELETE"],
        # Any request header: browser clients send their own (the openai JS SDK's x-stainless-*, which grow with
        # its versions; MCP's mcp-protocol-version, mcp-session-id, Last-Event-ID; X-Switchboard-Conversation).
        # Safe because no credential rides on cookies (allow_credentials stays off): a page must hold a bearer
        # token to get anything.
        allow_headers=["*"],
        expose_headers=["Retry-After", "mcp-session-id"],
        max_age=600,
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        wider={
            admin.UPLOAD_PATH: settings.admin_upload_bytes,
            TRANSCRIBE_PATH: int(settings.voice_max_mb * 1024 * 1024),
            **webhooks.body_limits,
            # API clients resend whole conversations and long system prompts.
            r"/v1/.*|/mcp": settings.api_max_body_bytes,
        },
    )
    app.add_middleware(SecurityHeaders)  # outermost: refusals by the other middleware carry them too

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        path, errors = request.url.path, exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            not_json = OpenAIError(400, "The request body is not valid JSON.")
            return _error(path, not_json, "the request body is not valid JSON")
        first = errors[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        problem = f"{where}: {first.get('msg', 'invalid')}"
        # OpenAI answers malformed parameters with 400 and names the parameter; FastAPI with 422.
        return _error(path, OpenAIError(400, problem, param=where), problem, status=422)

    @app.exception_handler(StateError)
    async def state_unavailable(request: Request, exc: StateError) -> JSONResponse:
        # Redis (REDIS_URL) is down: a temporary condition of this server, not the client's fault.
        logger.error("%s", exc)
        unavailable = OpenAIError(503, str(exc), type="server_error", headers={"Retry-After": "5"})
        return _error(request.url.path, unavailable, str(exc))

    @app.get("/widget.js", include_in_schema=False)
    def widget_js() -> Response:
        return built_file("widget.js", "text/javascript")

    @app.get("/", include_in_schema=False)
    def demo_page() -> Response:
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        page = page.replace("{{BOTS}}", json.dumps(sorted(app.state.switchboard.bots)))
        return Response(page, media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP})

    return app
