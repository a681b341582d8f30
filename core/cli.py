"""`switchboard ...`: the command line. Errors are one line on stderr with a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.config import Settings, get_settings
from core.errors import IngestStopped, SwitchboardError
from core.types import heading

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Switchboard: one RAG assistant, every channel.")
kb_app = typer.Typer(no_args_is_help=True, help="Manage knowledge bases.")
weaviate_app = typer.Typer(
    no_args_is_help=True, help="The local Weaviate server the kit runs when WEAVIATE_URL is unset."
)
llm_app = typer.Typer(no_args_is_help=True, help="The local model server the kit runs when no LLM endpoint is set.")
app.add_typer(kb_app, name="kb")
app.add_typer(weaviate_app, name="weaviate")
app.add_typer(llm_app, name="llm")
keys_app = typer.Typer(no_args_is_help=True, help="API keys for the OpenAI-compatible API (/v1).")
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

KBOption = Annotated[str | None, typer.Option("--kb", help="Knowledge base (default: SWITCHBOARD_KB).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "examples" / "docs"


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        _fail(f"invalid configuration: {where}: {first['msg']}")
    except SwitchboardError as exc:
        _fail(str(exc))


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except IngestStopped as exc:
        _fail(str(exc), 128 + signal.SIGTERM)
    except SwitchboardError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to finish (nothing is duplicated)", 130)


def _kb(settings: Settings, kb: str | None) -> str:
    from core.kb import validate_kb_name

    try:
        return validate_kb_name(kb or settings.default_kb)
    except SwitchboardError as exc:
        _fail(str(exc))


def _embedder(settings: Settings) -> Any:
    from core.embed import create_embedder

    try:
        return create_embedder(settings)
    except SwitchboardError as exc:
        _fail(str(exc))


class _RichProgress:
    def __init__(self, progress: Progress):
        self._progress = progress
        self._task: Any = None

    def stage(self, description: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[self._task].total)
        self._task = self._progress.add_task(description, total=total)

    def advance(self, count: int) -> None:
        self._progress.advance(self._task, count)


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Files, directories, http(s) URLs or sitemap.xml URLs.")],
    kb: KBOption = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove documents gone from these sources.")] = False,
) -> None:
    """Add or update documents in a knowledge base (only changed chunks are embedded)."""
    from core.ingest import ingest as run_ingest
    from core.store import open_store

    settings = _settings()
    name = _kb(settings, kb)
    embedder = _embedder(settings)

    async def go() -> Any:
        stop = asyncio.Event()  # SIGTERM: stop between documents, then close the store as usual
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
        ) as bar:
            async with open_store(settings) as store:
                return await run_ingest(
                    store,
                    embedder,
                    sources,
                    kb=name,
                    settings=settings,
                    prune=prune,
                    progress=_RichProgress(bar),
                    stop=stop,
                )

    report = _run(go)
    out.print(
        f"[bold]{name}[/bold]: {report.documents} documents ({report.documents_unchanged} unchanged"
        f"{f', {report.documents_pruned} pruned' if report.documents_pruned else ''}); chunks "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, {report.deleted} deleted "
        f"in {report.seconds:.1f}s",
        highlight=False,
    )
    for source, reason in report.failures:
        err.print(f"[yellow]skipped[/yellow] {escape(source)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if report.failures:
        _fail(f"{len(report.failures)} source(s) could not be read; fix or remove them and run again")


@app.command()
def search(
    query: str,
    kb: KBOption = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Number of results.")] = 5,
    alpha: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="0 = keyword only, 1 = vector only.")] = None,
    source_prefix: Annotated[str | None, typer.Option(help="Only sources starting with this path or URL.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Hybrid search (BM25 + vectors) in a knowledge base."""
    from core.search import SearchOptions, retrieve
    from core.store import open_store

    settings = _settings()
    name = _kb(settings, kb)
    embedder = _embedder(settings)
    options = SearchOptions(
        top_k=k, alpha=settings.search_alpha if alpha is None else alpha, source_prefix=source_prefix
    )

    async def go() -> Any:
        async with open_store(settings) as store:
            await store.require_chunks(name)
            return await retrieve(store, embedder, name, query, options)

    results = _run(go)
    if as_json:
        rows = [{k: getattr(r, k) for k in ("title", "source", "section", "snippet", "score")} for r in results]
        print(json.dumps({"query": query, "results": rows}, ensure_ascii=False, indent=2))
        return
    if not results:
        out.print("no results")
    for i, r in enumerate(results, 1):
        out.print(f"[bold][{i}] {escape(heading(r.title, r.section))}[/bold]  score {r.score:.3f}", highlight=False)
        out.print(f"    [cyan]{escape(r.source)}[/cyan]", highlight=False)
        out.print(f"    {escape(r.snippet)}\n", highlight=False)


@app.command("eval")
def eval_command(
    qa_file: Annotated[Path, typer.Argument(help='JSONL: {"question": ..., "expected_sources": [...]} per line.')],
    kb: KBOption = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100)] = 5,
    alpha: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure retrieval: recall@k and MRR@10."""
    from core.evaluate import evaluate, load_qa
    from core.store import open_store

    settings = _settings()
    name = _kb(settings, kb)
    try:
        qa = load_qa(qa_file)
    except SwitchboardError as exc:
        _fail(str(exc))
    embedder = _embedder(settings)
    chosen_alpha = settings.search_alpha if alpha is None else alpha

    async def go() -> Any:
        async with open_store(settings) as store:
            return await evaluate(store, embedder, name, qa, k=k, alpha=chosen_alpha)

    report = _run(go)
    if as_json:
        payload = {
            "kb": name,
            "alpha": chosen_alpha,
            "k": k,
            "questions": len(report.questions),
            f"recall@{k}": report.recall_at_k,
            "mrr@10": report.mrr_at_10,
            "results": [asdict(q) for q in report.questions],
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    misses = [q for q in report.questions if q.reciprocal_rank == 0.0]
    for q in misses:
        out.print(
            f"[yellow]miss[/yellow] {escape(q.question)}  (expected {escape(', '.join(q.expected))})", highlight=False
        )
    out.print(
        f"{len(report.questions)} questions, alpha {chosen_alpha}: recall@{k} {report.recall_at_k:.3f}, "
        f"MRR@10 {report.mrr_at_10:.3f}",
        highlight=False,
    )


@kb_app.command("list")
def kb_list(as_json: JsonOption = False) -> None:
    """Knowledge bases with document and chunk counts."""
    from core.store import open_store

    settings = _settings()

    async def go() -> Any:
        async with open_store(settings) as store:
            return await store.list_kbs()

    kbs = _run(go)
    if as_json:
        print(
            json.dumps([{"name": s.name, "documents": s.documents, "chunks": s.chunks, **asdict(s.meta)} for s in kbs])
        )
        return
    table = Table("KB", "documents", "chunks", "embedder")
    for s in kbs:
        table.add_row(s.name, str(s.documents), str(s.chunks), f"{s.meta.embed_model} ({s.meta.embed_dim})")
    out.print(table if kbs else "no knowledge bases yet; add one with `switchboard ingest PATH`")


@kb_app.command("delete")
def kb_delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False
) -> None:
    """Delete a knowledge base and all its chunks."""
    from core.kblock import kb_write_lock
    from core.store import open_store

    settings = _settings()
    kb = _kb(settings, name)
    if not yes and not typer.confirm(f"Delete knowledge base {kb!r} and all its chunks?"):
        _fail("not deleted")

    async def go() -> None:
        async with open_store(settings) as store, kb_write_lock(settings, kb, wait=False):
            await store.delete_kb(kb)

    _run(go)
    out.print(f"deleted {kb}")


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Is Weaviate reachable, which embedder is configured, which KBs exist."""
    from core.shared_state import state_backend
    from core.store import open_store

    settings = _settings()
    embedder_name = f"{settings.embed_provider}: {settings.embed_model}"

    async def go() -> Any:
        async with open_store(settings) as store:
            return await store.server_version(), await store.cluster_health(), await store.list_kbs()

    version, health, kbs = _run(go)
    where = settings.weaviate_url or f"local (127.0.0.1:{settings.weaviate_local_port}, {settings.weaviate_dir})"
    if as_json:
        rows = [{"name": s.name, "documents": s.documents, "chunks": s.chunks, **asdict(s.meta)} for s in kbs]
        nodes = {"healthy": health.summary, "serving": health.serving, "nodes": [asdict(n) for n in health.nodes]}
        weaviate = {"url": where, "version": version, "consistency": health.consistency, **nodes}
        print(json.dumps({"weaviate": weaviate, "embedder": embedder_name, "kbs": rows}))
        return
    out.print(f"Weaviate {version} at {where}: reachable", highlight=False)
    out.print(f"Nodes {health.summary}" if health.serving else f"[red]Nodes {health.summary}[/red]", highlight=False)
    for n in health.nodes:
        out.print(f"  {n.name}: {n.status} {n.version}, {n.shards} shards, {n.objects} objects", highlight=False)
    out.print(f"Embedder {embedder_name}", highlight=False)
    out.print(f"Shared state: {state_backend(settings)}", highlight=False)
    for s in kbs:
        mismatch = "" if s.meta.embed_model == settings.embed_model else "  [red](built with another embedder)[/red]"
        out.print(
            f"KB {s.name}: {s.documents} documents, {s.chunks} chunks, {s.meta.embed_model}{mismatch}", highlight=False
        )
    if not kbs:
        out.print("No knowledge bases yet: `switchboard ingest PATH`")


def _local() -> Any:
    from core.weaviate_local import LocalWeaviate

    settings = _settings()
    if settings.weaviate_url:
        _fail(f"WEAVIATE_URL is set ({settings.weaviate_url}); the kit does not run a local Weaviate")
    return LocalWeaviate.from_settings(settings)


def _api_keys() -> Any:
    from core.apikeys import ApiKeys

    return ApiKeys(_settings().data_dir / "api-keys.sqlite3")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "api",
    bot: Annotated[list[str] | None, typer.Option("--bot", help="Limit the key to this bot (repeatable).")] = None,
) -> None:
    """Create a key; it is shown once and stored only as a hash."""
    from core.profiles import load_profiles

    bots = tuple(bot or ())
    try:
        known = load_profiles(_settings())
    except SwitchboardError as exc:
        _fail(str(exc))
    unknown = [b for b in bots if b not in known]
    if unknown:
        _fail(f"unknown bot {unknown[0]!r}; bots: {', '.join(sorted(known))}")
    plain, key = _api_keys().create(name=name, bots=bots)
    err.print(f"key {key.id} for {', '.join(bots) or 'every bot'}; store it now, it is not shown again:")
    print(plain)


@keys_app.command("list")
def keys_list() -> None:
    """Keys with their bots and last use (never the keys themselves)."""
    table = Table("id", "name", "bots", "created", "last used", "status")

    def stamp(moment: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment)) if moment else "never"

    for k in _api_keys().list():
        table.add_row(
            k.id,
            k.name,
            ", ".join(k.bots) or "all",
            stamp(k.created_at),
            stamp(k.last_used_at),
            "revoked" if k.revoked else "active",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id; it stops working at once."""
    if not _api_keys().revoke(key_id):
        _fail(f"no active key with id {key_id!r}; see `switchboard keys list`")
    out.print(f"revoked {key_id}")


@app.command("forget-user")
def forget_user(
    user_id: Annotated[str, typer.Argument(help="The user id as the channel knows it (Slack U…, Telegram, widget).")],
    channel: Annotated[
        str | None, typer.Option(help="Only this channel (widget, api, slack, telegram, discord); default: every one.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase everything kept about a user: their questions and answers, feedback, and conversation memory."""
    from core import privacy

    settings = _settings()
    where = f"on channel {channel!r}" if channel else "on every channel"
    if not yes and not typer.confirm(f"Erase every conversation of user {user_id!r} {where}?"):
        _fail("nothing erased")

    async def go() -> Any:
        async with privacy.open_records(settings) as records:
            return await privacy.forget_user(records, user_id, channel)

    erased = _run(go)
    if as_json:
        print(json.dumps({"user_id": user_id, "channel": channel, **asdict(erased)}))
        return
    out.print(
        f"erased user {escape(user_id)} {where}: {erased.conversations} conversations, {erased.answers} answers, "
        f"{erased.feedback} feedback",
        highlight=False,
    )


def _start_detached(local: Any, label: str) -> None:
    try:
        started = local.start()
    except SwitchboardError as exc:
        _fail(str(exc))
    out.print(f"{label} {'started' if started else 'already running'} on {local.url}", highlight=False)


@weaviate_app.command("start")
def weaviate_start() -> None:
    """Start the local Weaviate and leave it running (later commands reuse it)."""
    _start_detached(_local(), "Weaviate")


@weaviate_app.command("stop")
def weaviate_stop() -> None:
    """Stop the local Weaviate cleanly."""
    _local().stop()
    out.print("Weaviate stopped")


@weaviate_app.command("install")
def weaviate_install(
    method: Annotated[str, typer.Option(help="auto (download, else go build), download, or go.")] = "auto",
) -> None:
    """Get the pinned Weaviate server binary."""
    if method not in ("auto", "download", "go"):
        _fail("--method must be auto, download or go")
    try:
        path = _local().install(method)
    except SwitchboardError as exc:
        _fail(str(exc))
    out.print(f"Weaviate server binary: {path}")


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

    from core.rag import open_assistant
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

    from core.rag import open_assistant
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


def _local_llm() -> Any:
    from core.llm import LocalLLM

    settings = _settings()
    if not settings.llm_is_local:
        _fail("LLM_BASE_URL or LLM_API_KEY is set; the kit does not run a local model")
    return LocalLLM.from_settings(settings)


@llm_app.command("start")
def llm_start() -> None:
    """Start the local model server and leave it running (later commands reuse it)."""
    _start_detached(_local_llm(), "local model")


@llm_app.command("stop")
def llm_stop() -> None:
    """Stop the local model server."""
    _local_llm().stop()
    out.print("local model stopped")


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
    from core.rag import open_assistant
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
    from core.ingest import ingest as run_ingest

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


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("core.shutdown").setLevel(logging.INFO)  # "shutting down: N answers in flight"
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
