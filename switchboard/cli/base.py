"""The command-line app, its sub-apps and the helpers every command uses. Errors are one line on stderr with a
non-zero exit."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from core.config import Settings, get_settings
from core.errors import IngestStopped, SwitchboardError

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


class _DefaultRun(TyperGroup):
    """A group whose `run` subcommand may be left out: `switchboard eval qa.jsonl` is `switchboard eval run
    qa.jsonl`, next to `switchboard eval generate`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's vendored click.Context
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_DefaultRun,
    no_args_is_help=True,
    help="Measure retrieval on a QA set (`eval QA.jsonl`, i.e. `eval run`), or generate one from a KB.",
)
app.add_typer(eval_app, name="eval")
export_app = typer.Typer(no_args_is_help=True, help="Training data from a knowledge base.")
app.add_typer(export_app, name="export")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

KBOption = Annotated[str | None, typer.Option("--kb", help="Knowledge base (default: SWITCHBOARD_KB).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
CrawlOption = Annotated[bool, typer.Option("--crawl", help="Each URL is a site's start page: crawl it.")]
DepthOption = Annotated[int | None, typer.Option("--depth", help="Crawl: links followed from the start (2).")]
MaxPagesOption = Annotated[int | None, typer.Option("--max-pages", help="Crawl: at most this many pages (1000).")]
PrefixOption = Annotated[str | None, typer.Option("--prefix", help="Crawl: only paths under it, like /docs/.")]


def _crawl_options(crawl: bool, depth: int | None, max_pages: int | None, prefix: str | None) -> dict[str, Any]:
    """The crawl options given (validated by core.ingest.crawl.CrawlOptions); refused without --crawl."""
    given = {k: v for k, v in {"depth": depth, "max_pages": max_pages, "prefix": prefix}.items() if v is not None}
    if given and not crawl:
        _fail(f"{', '.join('--' + k.replace('_', '-') for k in given)} only apply to a crawl (--crawl)")
    return given


def _settings() -> Settings:
    return _load(get_settings)


def _load(read: Callable[[], T]) -> T:
    """Settings read from the environment (core's, or a chat adapter's); an invalid one is a one-line error."""
    try:
        return read()
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


@contextmanager
def _progress() -> Iterator[_RichProgress]:
    """A progress bar on stderr, one line per stage of a long write (ingest, reembed)."""
    columns = TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    with Progress(*columns, console=err) as bar:
        yield _RichProgress(bar)


def _stop_on_sigterm() -> asyncio.Event:
    """An event SIGTERM sets, inside the running loop: a long write stops between documents and closes as usual
    (the next run repairs the rest)."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop


def _when(seconds: float | None) -> str:
    """A moment as every command prints it: UTC (as the admin API gives it), to the minute; "never" for none."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%MZ") if seconds else "never"
