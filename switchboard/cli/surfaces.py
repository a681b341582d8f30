"""Which surface runs in this process: the terminal (ask, chat), the web server, MCP over stdio, a chat bot, or
the demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from core.config import Settings
from core.errors import SwitchboardError
from core.types import heading
from switchboard.cli.base import (
    JsonOption,
    KBOption,
    _fail,
    _kb,
    _run,
    _settings,
    app,
    err,
    out,
)

SAMPLE_DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"


def _with_kb(settings: Settings, kb: str | None) -> Settings:
    return settings if kb is None else settings.model_copy(update={"default_kb": _kb(settings, kb)})


def _print_sources(done: Any) -> None:
    if not done.citations:
        return
    label = "Sources" if done.cited else "Sources consulted"
    out.print(f"\n[bold]{label}[/bold]")
    for c in done.citations:
        out.print(f"  [{c.n}] {escape(heading(c.title, c.section))}  [dim]{escape(c.source)}[/dim]", highlight=False)


async def _stream_answer(assistant: Any, message: Any) -> Any:
    """Print the answer as it streams; return the last event (Done or Failed)."""
    from core.types import Delta, Done, Failed

    async for event in assistant.answer(message):
        if isinstance(event, Delta):
            out.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, Done):
            out.print()
            _print_sources(event)
            return event
        elif isinstance(event, Failed):
            err.print(f"[red]error:[/red] {event.reason}", highlight=False)
            return event
    return None


@app.command()
def ask(question: str, kb: KBOption = None, as_json: JsonOption = False) -> None:
    """Answer a question from a knowledge base, with cited sources (streamed)."""
    import uuid

    from core.answer.assistant import open_assistant
    from core.types import Done, Failed, Message

    settings = _with_kb(_settings(), kb)
    message = Message(text=question, channel="cli", conversation_id=uuid.uuid4().hex)

    async def go() -> Any:
        async with open_assistant(settings) as assistant:
            if not as_json:
                return await _stream_answer(assistant, message)
            return [e async for e in assistant.answer(message)][-1]

    last = _run(go)
    if isinstance(last, Failed):
        if as_json:
            _fail(last.reason)
        raise typer.Exit(1)  # the reason was printed with the stream
    if as_json and isinstance(last, Done):
        sources = [asdict(c) for c in last.citations]
        payload = {"answer": last.text, "sources": sources, "cited": last.cited, "fallback": last.fallback}
        print(json.dumps(payload, ensure_ascii=False, indent=2))


@app.command()
def chat(
    kb: KBOption = None,
    conversation: Annotated[str | None, typer.Option(help="Resume a conversation by its id.")] = None,
) -> None:
    """Interactive chat with memory. /reset starts over, /exit (or Ctrl-D) quits."""
    import uuid

    from core.answer.assistant import open_assistant
    from core.types import Message

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


def _serve(settings: Settings, prepare: Any = None) -> None:
    from core.ports import check_ports
    from widget.app import create_app
    from widget.server import check_bind_address, serve

    check_bind_address(settings)
    check_ports(settings)  # before Weaviate or the model server start: a clash is one clear line, not a traceback
    url = f"http://{settings.server_host}:{settings.server_port}/"
    serve(create_app(settings, prepare), settings, lambda: out.print(f"Serving on [bold]{url}[/bold] (Ctrl-C stops)"))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SERVER_PORT).")] = None,
) -> None:
    """Run the web server: chat API (SSE), the embeddable widget, health checks, a demo page."""
    settings = _settings()
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

    settings = _with_kb(_settings(), kb)

    async def go() -> None:
        async with open_assistant(settings) as assistant:
            if await until_sigterm(serve_stdio(assistant)) is None:
                return  # the client closed stdin
            await assistant.in_flight.drain(settings.shutdown_grace_seconds)
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

    settings = _settings()
    logging.getLogger("bots").setLevel(logging.INFO)
    module = importlib.import_module(f"bots.{platform.value}")
    _run(lambda: module.run(settings))  # each bot logs when it is connected; Ctrl-C stops it


@app.command()
def demo() -> None:
    """The main job on the embedded defaults: local Weaviate, embedder and model, the sample docs, and the web
    widget over them at http://127.0.0.1:8000/."""
    from core.ingest.pipeline import ingest as run_ingest

    settings = _settings().model_copy(update={"default_kb": "demo"})

    async def prepare(assistant: Any) -> None:
        report = await run_ingest(
            assistant.store, assistant.embedder, [str(SAMPLE_DOCS)], kb="demo", settings=settings, prune=True
        )
        model = assistant.llm.model if assistant.llm else "none: answers quote passages"
        out.print(
            f"Knowledge base 'demo': {report.documents} sample documents ({report.added} chunks added); "
            f"model: {model}.",
            highlight=False,
        )

    try:
        _serve(settings, prepare)
    except SwitchboardError as exc:
        _fail(str(exc))
