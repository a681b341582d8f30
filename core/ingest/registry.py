"""A knowledge base's registered sources and each one's sync history, kept in SQLite under the data directory
(sources.sqlite3, the owner's only) so that every process sharing the data directory — the CLI, each server —
sees the same list. Syncing one is core.ingest.sync; this module only validates and stores."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.config import Settings
from core.errors import IngestError, SwitchboardError
from core.ingest.connectors import CONNECTOR_KINDS, ConnectorKind, parse_target
from core.ingest.crawl import CrawlOptions
from core.ingest.pipeline import IngestReport
from core.ingest.sources import check_url, is_url
from core.ingest.validators import SCHEMA as VALIDATORS_SCHEMA
from core.sqlite import connect, init_db

SourceKind = Literal["path", "url", "sitemap", "crawl"] | ConnectorKind
_EVERY = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
KEEP_RUNS = 50  # sync history kept per source


class SourceNotFound(SwitchboardError):
    pass


def every_seconds(every: str) -> int:
    """'30m', '6h', '1d' → seconds. The schedule that runs them comes later; a typo is refused now."""
    match = _EVERY.match(every)
    if match is None or int(match[1]) == 0:
        raise IngestError(f"--every {every!r}: expected a positive number and a unit m, h or d, like 30m, 6h or 1d")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def check_target(target: str, sitemap: bool, crawl: bool = False) -> tuple[SourceKind, str]:
    """The kind and stored form of a target, validated as `switchboard ingest` would: URLs through the same
    checks, paths must exist (kept absolute, so a sync from another directory reads the same files); a connector's
    KIND:ID (confluence:SPACE, notion:PAGE_OR_DATABASE_ID, drive:FOLDER_ID) as it is."""
    if sitemap and crawl:
        raise IngestError(f"{target}: --sitemap and --crawl are two kinds of source; choose one")
    connector = parse_target(target)
    if connector is not None:
        if sitemap or crawl:
            raise IngestError(f"{target}: --{'sitemap' if sitemap else 'crawl'} is for an http(s) URL")
        return connector[0], f"{connector[0]}:{connector[1]}"
    if is_url(target):
        check_url(target)
        return ("sitemap" if sitemap else "crawl" if crawl else "url"), target
    if sitemap or crawl:
        raise IngestError(f"{target}: --{'sitemap' if sitemap else 'crawl'} needs an http(s) URL")
    path = Path(target).expanduser().resolve()
    if not path.exists():
        raise IngestError(f"{target}: no such file or directory")
    return "path", str(path)


@dataclass(frozen=True, kw_only=True)
class SyncRun:
    started_at: float
    finished_at: float
    documents: int = 0
    documents_unchanged: int = 0
    documents_pruned: int = 0
    documents_skipped: int = 0  # web pages not downloaded: unchanged (304, sitemap <lastmod>)
    added: int = 0  # chunks, as the ingest report counts them
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    error: str | None = None

    @classmethod
    def of(cls, started_at: float, report: IngestReport | None, error: str | None) -> SyncRun:
        counts = {} if report is None else {f: getattr(report, f) for f in _COUNTS}
        return cls(started_at=started_at, finished_at=time.time(), error=error, **counts)


_COUNTS = (
    "documents",
    "documents_unchanged",
    "documents_pruned",
    "documents_skipped",
    "added",
    "updated",
    "unchanged",
    "deleted",
)


@dataclass(frozen=True, kw_only=True)
class Source:
    id: str
    kb: str
    kind: SourceKind
    target: str
    prune: bool
    every: str | None  # the sync schedule, e.g. '6h'; None: synced only when asked
    created_at: float
    options: dict[str, Any] = field(default_factory=dict)  # the kind's own settings (JSON in the registry)
    last: SyncRun | None = None


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY, kb TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, prune INTEGER NOT NULL,
    every TEXT, created_at REAL NOT NULL, options TEXT NOT NULL DEFAULT '{{}}', UNIQUE (kb, target)
);
CREATE TABLE IF NOT EXISTS syncs (
    source_id TEXT NOT NULL REFERENCES sources (id) ON DELETE CASCADE, started_at REAL NOT NULL,
    finished_at REAL NOT NULL, {", ".join(f"{c} INTEGER NOT NULL" for c in _COUNTS)}, error TEXT
);
CREATE INDEX IF NOT EXISTS syncs_by_source ON syncs (source_id, started_at);
CREATE TABLE IF NOT EXISTS connector_docs (
    source_id TEXT NOT NULL, doc_id TEXT NOT NULL, url TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (source_id, doc_id)
);
"""
_SOURCE_COLUMNS = "s.id, s.kb, s.kind, s.target, s.prune, s.every, s.created_at, s.options"
_RUN_COLUMNS = ", ".join(("started_at", "finished_at", *_COUNTS, "error"))


class Registry:
    """Blocking SQLite calls, each wrapped for the event loop (short-lived connections never cross threads)."""

    def __init__(self, path: Path):
        self._path = path
        init_db(path, _SCHEMA + VALIDATORS_SCHEMA)
        with connect(path) as db:  # a registry written before sources had options
            if "options" not in {row[1] for row in db.execute("PRAGMA table_info(sources)")}:
                db.execute("ALTER TABLE sources ADD COLUMN options TEXT NOT NULL DEFAULT '{}'")
            if "documents_skipped" not in {row[1] for row in db.execute("PRAGMA table_info(syncs)")}:
                db.execute("ALTER TABLE syncs ADD COLUMN documents_skipped INTEGER NOT NULL DEFAULT 0")

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    def for_settings(cls, settings: Settings) -> Registry:
        return cls(settings.data_dir / "sources.sqlite3")

    async def add(
        self,
        *,
        kb: str,
        target: str,
        sitemap: bool,
        prune: bool | None,
        every: str | None,
        options: dict[str, Any] | None = None,
        crawl: bool = False,
    ) -> Source:
        kind, stored = check_target(target, sitemap, crawl)
        if prune is None:  # a connector lists its documents, so one no longer listed was deleted there
            prune = kind in CONNECTOR_KINDS
        if kind == "crawl":
            options = {**(options or {}), **CrawlOptions.parse(options or {}).as_options()}
        if every is not None:
            every_seconds(every)
            every = "".join(every.split())  # ' 6 h' is kept as '6h'
        source = Source(
            id=uuid.uuid4().hex[:12],
            kb=kb,
            kind=kind,
            target=stored,
            prune=prune,
            every=every,
            created_at=time.time(),
            options=options or {},
        )
        await asyncio.to_thread(self._add, source)
        return source

    def _add(self, s: Source) -> None:
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM sources WHERE kb = ? AND target = ?", (s.kb, s.target)).fetchone():
                raise IngestError(f"{s.target} is already a source of knowledge base {s.kb!r}")
            db.execute(
                "INSERT INTO sources (id, kb, kind, target, prune, every, created_at, options) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (s.id, s.kb, s.kind, s.target, int(s.prune), s.every, s.created_at, json.dumps(s.options)),
            )
            db.execute("COMMIT")

    async def sources(self, kb: str | None = None) -> list[Source]:
        """Oldest first, each with its last sync."""
        return await asyncio.to_thread(self._list, kb, None)

    async def get(self, source_id: str, kb: str | None = None) -> Source:
        found = await asyncio.to_thread(self._list, kb, source_id)
        if not found:
            where = f" in knowledge base {kb!r}" if kb else ""
            raise SourceNotFound(f"no source {source_id!r}{where}; see `switchboard source list`")
        return found[0]

    def _list(self, kb: str | None, source_id: str | None) -> list[Source]:
        # The latest run per source: the one with the greatest started_at (ties cannot matter to a reader).
        query = (
            f"SELECT {_SOURCE_COLUMNS}, {', '.join('r.' + c for c in _RUN_COLUMNS.split(', '))} FROM sources s "
            "LEFT JOIN syncs r ON r.rowid = (SELECT rowid FROM syncs WHERE source_id = s.id "
            "ORDER BY started_at DESC LIMIT 1) WHERE (? IS NULL OR s.kb = ?) AND (? IS NULL OR s.id = ?) "
            "ORDER BY s.created_at"
        )
        with connect(self._path) as db:
            rows = db.execute(query, (kb, kb, source_id, source_id)).fetchall()
        return [_source(row) for row in rows]

    async def remove(self, source_id: str, kb: str | None = None) -> Source:
        """Forget a source and its history (its documents stay in the KB; `kb delete` or a pruning ingest
        removes them)."""
        source = await self.get(source_id, kb)
        await asyncio.to_thread(self._remove, source_id)
        return source

    def _remove(self, source_id: str) -> None:
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM syncs WHERE source_id = ?", (source_id,))
            db.execute("DELETE FROM connector_docs WHERE source_id = ?", (source_id,))
            db.execute("DELETE FROM page_validators WHERE source_id = ?", (source_id,))
            db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
            db.execute("COMMIT")

    async def record(self, source_id: str, run: SyncRun) -> None:
        await asyncio.to_thread(self._record, source_id, run)

    def _record(self, source_id: str, run: SyncRun) -> None:
        values = (source_id, run.started_at, run.finished_at, *(getattr(run, c) for c in _COUNTS), run.error)
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM sources WHERE id = ?", (source_id,)).fetchone():  # removed meanwhile
                db.execute(
                    f"INSERT INTO syncs (source_id, {_RUN_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values
                )
                db.execute(
                    "DELETE FROM syncs WHERE source_id = ? AND rowid NOT IN (SELECT rowid FROM syncs "
                    "WHERE source_id = ? ORDER BY started_at DESC LIMIT ?)",
                    (source_id, source_id, KEEP_RUNS),
                )
            db.execute("COMMIT")

    async def history(self, source_id: str) -> list[SyncRun]:
        """Newest first."""
        return await asyncio.to_thread(self._history, source_id)

    def _history(self, source_id: str) -> list[SyncRun]:
        with connect(self._path) as db:
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM syncs WHERE source_id = ? ORDER BY started_at DESC", (source_id,)
            ).fetchall()
        return [_run(row) for row in rows]


def _run(row: tuple[object, ...]) -> SyncRun:
    return SyncRun(**dict(zip(_RUN_COLUMNS.split(", "), row, strict=True)))  # type: ignore[arg-type]


def _source(row: tuple[object, ...]) -> Source:
    id_, kb, kind, target, prune, every, created_at, options, *run = row
    return Source(
        id=str(id_),
        kb=str(kb),
        kind=kind,  # type: ignore[arg-type]
        target=str(target),
        prune=bool(prune),
        every=every if every is None else str(every),
        created_at=float(created_at),  # type: ignore[arg-type]
        options=json.loads(str(options)),
        last=None if run[0] is None else _run(tuple(run)),
    )
