"""The admin API's registered sources (/admin/kbs/{kb}/sources): list, add, remove, and sync one as a job.
The same registry and sync as `switchboard source` and `switchboard sync` (core.ingest.registry, .sync). Its
routes are served with admin's by widget.admin.api(): the same /admin prefix, key check and error responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import AliasChoices, BaseModel, Field

from core.errors import IngestError
from core.ingest.connectors import parse_target
from core.ingest.lease import new_holder
from core.ingest.pipeline import IngestReport, Progress
from core.ingest.registry import Registry, Source, SourceKind, SourceNotFound, SyncRun
from core.ingest.schedule import next_sync
from core.ingest.sources import is_url
from core.ingest.sync import SourceBusy, take_lease
from widget.admin import KB, JobOut, _errors, _job
from widget.crawl_body import CrawlIn
from widget.deps import KnowledgeDep, StateDep

router = APIRouter()  # served under /admin by widget.admin.api()


def get_registry(state: StateDep) -> Registry:
    return state.sources


RegistryDep = Annotated[Registry, Depends(get_registry)]
SourceId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="id from the source listing")]


class SourceIn(CrawlIn):
    target: str = Field(
        max_length=2000,
        description="An http(s) URL (a page, a file, or a sitemap), or a connector: confluence:SPACE_KEY, "
        "notion:PAGE_OR_DATABASE_ID, drive:FOLDER_ID",
    )
    sitemap: bool = Field(False, description="The target is a sitemap.xml: every page it lists is ingested")
    prune: bool | None = Field(
        None, description="Each sync removes documents gone from the source (default: on for connectors only)"
    )
    every: str | None = Field(None, max_length=20, description="How often to sync it: 30m, 6h, 1d")


class SyncRunOut(BaseModel):
    started_at: datetime
    finished_at: datetime
    documents: int
    documents_unchanged: int
    documents_pruned: int
    documents_skipped: int = Field(description="Web pages not downloaded: unchanged (HTTP 304, sitemap lastmod)")
    added: int = Field(description="Chunks, as the ingest summary counts them")
    updated: int
    unchanged: int
    deleted: int
    error: str | None = Field(description="Why the sync failed, or which documents could not be read")


class SourceOut(BaseModel):
    id: str
    kb: str
    kind: SourceKind
    target: str
    prune: bool
    every: str | None
    options: dict[str, Any] = Field(description="The kind's settings: a crawl's depth, max_pages and prefix")
    created_at: datetime
    last_sync: SyncRunOut | None = Field(validation_alias=AliasChoices("last_sync", "last"))  # Source.last
    next_sync: datetime | None = Field(
        None,
        description="When the schedule syncs it (`every` after the last run started; in the past: as soon as a "
        "server with SYNC_SCHEDULE or `switchboard sync --watch` looks); null: only when asked",
    )


class SourceHistoryOut(SourceOut):
    history: list[SyncRunOut] = Field(description="Newest first")


class SourcesOut(BaseModel):
    kb: str
    sources: list[SourceOut]


def _run(run: SyncRun) -> SyncRunOut:
    return SyncRunOut.model_validate(run, from_attributes=True)


def _source(source: Source) -> SourceOut:
    due = next_sync(source)
    return SourceOut.model_validate(source, from_attributes=True).model_copy(
        update={"next_sync": None if due is None else datetime.fromtimestamp(due, UTC)}
    )


async def _get(registry: Registry, source_id: str, kb: str) -> Source:
    try:
        return await registry.get(source_id, kb)
    except SourceNotFound as exc:
        raise HTTPException(404, str(exc)) from exc


@router.get("/kbs/{kb}/sources", responses=_errors(422))
async def list_sources(kb: KB, registry: RegistryDep) -> SourcesOut:
    """The KB's registered sources, oldest first, each with its last sync's result."""
    return SourcesOut(kb=kb, sources=[_source(s) for s in await registry.sources(kb)])


@router.get("/kbs/{kb}/sources/{source_id}", responses=_errors(404, 422))
async def get_source(kb: KB, source_id: SourceId, registry: RegistryDep) -> SourceHistoryOut:
    """A source with its sync history, newest first (the latest 50 runs)."""
    source = await _get(registry, source_id, kb)
    history = [_run(r) for r in await registry.history(source.id)]
    return SourceHistoryOut(**_source(source).model_dump(), history=history)


@router.post("/kbs/{kb}/sources", status_code=201, responses=_errors(400, 422))
async def add_source(kb: KB, body: SourceIn, registry: RegistryDep) -> SourceOut:
    """Register a URL, sitemap or connector source; nothing is ingested until it is synced. Paths on the server
    are registered only with `switchboard source add` there: the API key must not read the server's files."""
    try:
        if not is_url(body.target) and parse_target(body.target) is None:
            raise HTTPException(
                400,
                f"{body.target}: only http(s) URLs here, or a connector (notion:ID); register paths with `source add`",
            )
        options = body.crawl_options()
        source = await registry.add(
            kb=kb,
            target=body.target,
            sitemap=body.sitemap,
            prune=body.prune,
            every=body.every,
            options=options,
            crawl=body.crawl,
        )
    except IngestError as exc:
        raise HTTPException(400, str(exc)) from exc
    return _source(source)


@router.delete("/kbs/{kb}/sources/{source_id}", status_code=204, responses=_errors(404, 422))
async def remove_source(kb: KB, source_id: SourceId, registry: RegistryDep) -> Response:
    """Forget a source and its sync history; its documents stay in the KB."""
    try:
        await registry.remove(source_id, kb)
    except SourceNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    return Response(status_code=204)


@router.post("/kbs/{kb}/sources/{source_id}/sync", status_code=202, responses=_errors(404, 409, 422))
async def sync(kb: KB, source_id: SourceId, registry: RegistryDep, state: StateDep, knowledge: KnowledgeDep) -> JobOut:
    """Sync the source now, as a job (follow it at GET /admin/jobs/{id}); the run joins the source's history.
    409 while another process (a replica's schedule, `switchboard sync`, an earlier request) is syncing it."""
    source = await _get(registry, source_id, kb)
    try:  # taken now, not when the job starts: the caller learns at once that the sync is someone else's
        held = await take_lease(state.leases, source, new_holder())
    except SourceBusy as exc:
        raise HTTPException(409, str(exc)) from exc

    async def work(progress: Progress) -> IngestReport:
        try:
            synced = await knowledge.sync(registry, source, held, progress=progress)
        finally:
            await held.release()
        if synced.report is None:
            raise IngestError(synced.run.error or "the sync failed")
        return synced.report

    try:
        return _job(await state.jobs.submit(kb=kb, kind="sync", inputs=[source.id], work=work))
    except BaseException:  # never queued (the job store failed): `work` will not release the lease
        await held.release()
        raise
