"""Neutral data types shared by the core and every surface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlsplit


def heading(title: str, section: str) -> str:
    """How a passage is named wherever it is shown: 'Title › Section' (the section trail excludes the title)."""
    return f"{title} › {section}" if section else title


def is_web(source: str) -> bool:
    """A document fetched from the web (shown and linked as its URL), not a file."""
    return urlsplit(source).scheme in ("http", "https")


def shown_source(source: str, origin: str) -> str:
    """How a document's source is shown outside the server: a URL as it is; a file by its path within what
    was ingested ('docs/guides/install.md' for the folder docs/, the file name for a file or an upload), never
    the server's absolute path."""
    if is_web(source):
        return source
    path = PurePosixPath(source)
    try:
        return path.relative_to(PurePosixPath(origin).parent).as_posix()
    except ValueError:  # not below its origin: the name alone
        return path.name


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """One stored piece of a document, as written to the vector store."""

    doc_id: str
    source: str  # absolute path or URL
    origin: str  # the ingest argument that found the document; `--prune` works per origin
    title: str
    section: str
    position: int
    text: str
    content_hash: str
    doc_chunks: int  # how many chunks its document has: search discounts long documents by it


@dataclass(frozen=True, kw_only=True)
class Source:
    """One retrieved chunk with its hybrid score, as surfaces show it."""

    title: str
    source: str  # absolute path or URL: show it with shown_source(source, origin)
    origin: str
    section: str
    snippet: str
    score: float  # hybrid score, normalised per query: good for ranking only
    # Cosine similarity of chunk and query vectors, comparable across queries; None unless the search asked for it
    # (SearchOptions.relevance: fetching the vectors adds 1-2 ms to a ~15 ms search, and only answers read them).
    relevance: float | None = None
    doc_id: str
    position: int
    text: str
    doc_chunks: int = 1  # chunks of its document (1 when the KB predates the count)


@dataclass(frozen=True, kw_only=True)
class Message:
    """One inbound question, as every surface normalises it."""

    text: str
    channel: str  # "cli", "widget", "api", "slack", ...: part of the conversation key
    conversation_id: str
    bot: str | None = None  # a profile from the bots file; None = the default bot
    user_id: str | None = None
    # Given by a stateless caller (the OpenAI-compatible API): used instead of the stored history, not saved.
    history: tuple[Turn, ...] | None = None
    generation: Generation | None = None
    query: str | None = None  # what to search for when not `text` itself (an API client's long prompt)


@dataclass(frozen=True, kw_only=True)
class Generation:
    """Per-request generation options a caller may set; None keeps the configured value."""

    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Citation:
    """A numbered source as the model saw it: the answer's `[n]` points here."""

    n: int
    title: str
    source: str
    section: str
    snippet: str


@dataclass(frozen=True, kw_only=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


FinishReason = Literal["stop", "length", "content_filter"]


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Tokens of the answer's model call: the prompt as sent (persona, history, retrieved passages) and the
    reply; the model server's own count when it reports one, else an estimate."""

    prompt_tokens: int
    completion_tokens: int


# --- the event stream of core.answer.assistant: typed, with a `kind` discriminator -----------------------------


@dataclass(frozen=True, kw_only=True)
class Sources:
    """The numbered sources retrieval chose, sent before the answer streams."""

    kind: Literal["sources"] = "sources"
    sources: tuple[Citation, ...]


@dataclass(frozen=True, kw_only=True)
class Delta:
    kind: Literal["delta"] = "delta"
    text: str


@dataclass(frozen=True, kw_only=True)
class Done:
    """The full answer (Markdown). `citations` are the sources the answer cites; when the model cited none,
    they are the sources it was given and `cited` is False (show them as "sources consulted")."""

    kind: Literal["done"] = "done"
    answer_id: str  # in the answer log: what feedback refers to
    text: str
    citations: tuple[Citation, ...]
    cited: bool
    fallback: bool  # True: the LLM failed and the answer is the best passages, labelled as such
    finish_reason: FinishReason = "stop"  # "length": the model hit its token limit mid-answer
    usage: Usage | None = None  # None: no model call produced this answer (nothing found, or the fallback)
    curated: bool = False  # True: an operator's curated answer (core.answer.curated), not a generated one


@dataclass(frozen=True, kw_only=True)
class Failed:
    """Nothing could be answered (e.g. the vector store is down); `reason` is safe to show a user."""

    kind: Literal["failed"] = "failed"
    reason: str


Event = Sources | Delta | Done | Failed
