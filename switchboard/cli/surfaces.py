"""Which surface runs in this process: the terminal (ask, chat), the web server, MCP over stdio, a chat bot, or
the demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from core.answer.citations import sources_text
from core.answer.collect import collect
from core.config import Settings
from core.errors import AnswerFailed, SwitchboardError
from core.types import Done, Message
from switchboard.cli.base import (
    JsonOption,
    KBOption,
    _fail,
    _kb,
    _load,
    _run,
    _settings,
    app,
    err,
    out,
)
from widget.settings import WebSettings

if TYPE_CHECKING:  # the commands import what they open when they run: `--help` stays fast
    from core.answer.assistant import Assistant

SAMPLE_DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"
S = TypeVar("S", bound=Settings)  # core's settings, or the web server's


def _with_kb(settings: S, kb: str | None) -> S:
    return settings if kb is None else settings.model_copy(update={"default_kb": _kb(settings, kb)})


async def _stream_answer(assistant: Assistant, message: Message) -> Done | None:
    """Print the answer as it streams, then its sources; None (the reason printed) when it failed."""

    def show(text: str) -> None:
        out.print(text, end="", markup=False, highlight=False, soft_wrap=True)

    try:
        done = await collect(assistant.answer(message), show)
    except AnswerFailed as failed:
        err.print(f"[red]error:[/red] {failed}", highlight=False)
        return None
    out.print()
    if sources := sources_text(done):
        out.print(f"\n{sources}", markup=False, highlight=False, soft_wrap=True)
    return done


@app.command()
def ask(question: str, kb: KBOption = None, as_json: JsonOption = False) -> None:
    """Answer a question from a knowledge base, with cited sources (streamed)."""
    import uuid

    from core.answer.assistant import open_assistant

    settings = _with_kb(_settings(), kb)
    message = Message(text=question, channel="cli", conversation_id=uuid.uuid4().hex)

    async def go() -> Done | None:
        async with open_assistant(settings) as assistant:
            if as_json:
                return await collect(assistant.answer(message))  # a failure is one line on stderr (_run)
            return await _stream_answer(assistant, message)

    done = _run(go)
    if done is None:
        raise typer.Exit(1)  # the reason was printed with the stream
    if as_json:
        sources = [asdict(c) for c in done.citations]
        payload = {"answer": done.text, "sources": sources, "cited": done.cited, "fallback": done.fallback}
        print(json.dumps(payload, ensure_ascii=False, indent=2))


@app.command()
def chat(
    kb: KBOption = None,
    conversation: Annotated[str | None, typer.Option(help="Resume a conversation by its id.")] = None,
) -> None:
    """Interactive chat with memory. /reset starts over, /exit (or Ctrl-D) quits."""
    import uuid

    from core.answer.assistant import open_assistant

    settings = _with_kb(_settings(), kb)
    conversation_id = conversation or uuid.uuid4().hex

    async def go() -> None:
        async with open_assistant(settings) as assistant:
            out.print(f"[dim]conversation {conversation_id}: /reset to start over, /exit to quit[/dim]")
            while True:
                try:
                    line = (await asyncio.to_thread(input, "you> ")).strip()
                except EOFError:
                    out.print()
                    return
                if line in ("/exit", "/quit"):
                    return
                if line == "/reset":
                    await assistant.reset("cli", conversation_id)
                    out.print("[dim]conversation cleared[/dim]")
                elif line:
                    message = Message(text=line, channel="cli", conversation_id=conversation_id)
                    await _stream_answer(assistant, message)

    _run(go)


def _serve(settings: WebSettings, prepare: Callable[[Assistant], Awaitable[None]] | None = None) -> None:
    from widget.app import create_app
    from widget.ports import check_ports
    from widget.server import check_bind_address, serve
    from widget.webhooks import Webhooks

    check_bind_address(settings)
    check_ports(settings)  # before Weaviate or the model server start: a clash is one clear line, not a traceback
    url = f"http://{settings.server_host}:{settings.server_port}/"
    app = create_app(settings, prepare, webhooks=_load(Webhooks.from_environment))
    serve(app, settings, lambda: out.print(f"Serving on [bold]{url}[/bold] (Ctrl-C stops)"))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SERVER_PORT).")] = None,
) -> None:
    """Run the web server: chat API (SSE), the embeddable widget, health checks, a demo page."""
    settings = _load(WebSettings)  # core's settings and the web server's (SERVER_*, sessions, limits)
    updates = {k: v for k, v in (("server_host", host), ("server_port", port)) if v is not None}
    try:
        _serve(settings.model_copy(update=updates))
    except SwitchboardError as exc:
        _fail(str(exc))


@app.command("mcp")
def mcp_command(
    kb: Annotated[
        str | None,
        typer.Option("--kb", help="Knowledge base for tool calls that name none (default: SWITCHBOARD_KB)."),
    ] = None,
) -> None:
    """Serve the knowledge bases to an MCP client over stdio (tools search_knowledge and ask; logs on stderr)."""
    from core.answer.assistant import open_assistant
    from core.shutdown import until_sigterm
    from widget.mcp_server import serve_stdio

    settings = _with_kb(_load(WebSettings), kb)

    async def go() -> None:
        async with open_assistant(settings) as assistant:
            if await until_sigterm(serve_stdio(assistant, settings)) is None:
                return  # the client closed stdin
            await assistant.drain()
            await asyncio.sleep(0.2)  # the transport's writer thread sends the last results
        # SIGTERM, and everything is closed. The SDK reads stdin in a thread that cancelling cannot interrupt,
        # so an orderly exit would wait for the client's next line: leave now.
        logging.shutdown()
        os._exit(0)

    _run(go)


class Platform(StrEnum):
    slack = "slack"
    telegram = "telegram"
    discord = "discord"


@app.command()
def bot(platform: Platform) -> None:
    """Run a chat bot: slack, telegram or discord (tokens and mode from .env; see README "Chat bots")."""
    import importlib

    from bots.settings import ADAPTER_SETTINGS

    settings = _settings()
    adapter = _load(ADAPTER_SETTINGS[platform.value])  # the platform's own settings: SLACK_*, …
    logging.getLogger("bots").setLevel(logging.INFO)
    module = importlib.import_module(f"bots.{platform.value}")
    _run(lambda: module.run(settings, adapter))  # each bot logs when it is connected; Ctrl-C stops it


@app.command()
def demo() -> None:
    """The main job on the embedded defaults: local Weaviate, embedder and model, the sample docs, and the web
    widget over them at http://127.0.0.1:8000/."""
    settings = _load(WebSettings).model_copy(update={"default_kb": "demo"})

    async def prepare(assistant: Assistant) -> None:
        report = await assistant.knowledge.ingest([str(SAMPLE_DOCS)], kb="demo", prune=True)
        out.print(
            f"Knowledge base 'demo': {report.documents} sample documents ({report.added} chunks added); "
            f"model: {assistant.model}.",
            highlight=False,
        )

    try:
        _serve(settings, prepare)
    except SwitchboardError as exc:
        _fail(str(exc))
