"""The local servers the kit runs when nothing external is configured: Weaviate and the model server."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from core.errors import SwitchboardError
from switchboard.cli.base import (
    _fail,
    _settings,
    llm_app,
    out,
    weaviate_app,
)


def _local() -> Any:
    from core.store.local import LocalWeaviate

    settings = _settings()
    if settings.weaviate_url:
        _fail(f"WEAVIATE_URL is set ({settings.weaviate_url}); the kit does not run a local Weaviate")
    return LocalWeaviate.from_settings(settings)


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


def _local_llm() -> Any:
    from core.answer.llm import LocalLLM

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
