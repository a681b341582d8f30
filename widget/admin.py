"""The admin API (/admin): ingest uploaded files or URLs as background jobs, list and delete documents, read
feedback and conversations. Enabled by ADMIN_API_KEY and called with `Authorization: Bearer <key>`.

The work is the CLI's: core.ingest.pipeline (through widget.uploads for files), core.store.client,
core.answer.log. Jobs are widget.jobs: one at a time per KB, their records kept with the shared state (SQLite or Redis).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.datastructures import FormData, UploadFile

from core.answer.conversations import ConversationQuery
from core.answer.log import Rating
from core.answer.privacy import forget_user as erase_user
from core.errors import ConfigError, IngestError, KBNotFound, StoreError, UnsupportedSource
from core.ingest.lock import KBBusy
from core.ingest.pipeline import IngestReport, Progress
from core.ingest.sources import check_url
from core.kb import validate_kb_name
from core.types import Citation
from widget.crawl_body import CrawlIn
from widget.deps import AssistantDep, KnowledgeDep, ServerState, StateDep
from widget.jobs import Job, JobKind, JobState
from widget.uploads import UploadRejected, UploadTooLarge, check_uploads, ingest_staged, remove_upload, stage

# Upload requests get their own body limit (ADMIN_MAX_UPLOAD_MB) in widget.app.BodyLimit; every other admin
# request keeps MAX_BODY_BYTES.
UPLOAD_PATH = r"/admin/(ui/)?kbs/[^/]+/uploads"  # the API's, and the admin console's
MAX_FILES = 100

# HTTPBearer rather than a plain header parameter: it puts the scheme in the OpenAPI document, so /docs can
# send the key ("Authorize").
_bearer = HTTPBearer(auto_error=False, description="ADMIN_API_KEY")


class ErrorOut(BaseModel):
    detail: str


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut} for status in statuses}


def require_admin(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    key = state.settings.admin_api_key
    if key is None:
        raise HTTPException(503, "admin API disabled: set ADMIN_API_KEY")
    if credentials is None:
        raise HTTPException(
            401, "missing admin key: send `Authorization: Bearer <ADMIN_API_KEY>`", {"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(credentials.credentials.encode(), key.get_secret_value().encode()):
        raise HTTPException(403, "wrong admin key")


router = APIRouter()  # this module's routes; api() serves them under /admin


def api() -> APIRouter:
    """/admin: this module's routes and the registered sources' (widget.admin_sources), behind the admin key."""
    from widget import admin_sources  # imported here: it uses this module's pieces

    admin = APIRouter(
        prefix="/admin", tags=["Admin"], dependencies=[Depends(require_admin)], responses=_errors(401, 403, 503)
    )
    admin.include_router(router)
    admin.include_router(admin_sources.router)
    return admin


def _kb(kb: Annotated[str, Path(description="Knowledge base name")]) -> str:
    try:
        return validate_kb_name(kb)
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from exc


KB = Annotated[str, Depends(_kb)]


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except KBNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except StoreError as exc:
        raise HTTPException(503, str(exc)) from exc


# --- response models: they are the OpenAPI documentation of the answers (times: Unix seconds in, ISO out) --


class KBOut(BaseModel):
    name: str
    documents: int
    chunks: int
    embed_model: str
    embed_dim: int
    chunk_size: int
    chunk_overlap: int


class KBsOut(BaseModel):
    kbs: list[KBOut]


class FailureOut(BaseModel):
    source: str
    reason: str


class SummaryOut(BaseModel):
    """The ingest report, as `switchboard ingest` prints it."""

    documents: int
    documents_unchanged: int
    documents_pruned: int
    documents_skipped: int = Field(0, description="Web pages not downloaded: unchanged (HTTP 304, sitemap lastmod)")
    added: int
    updated: int
    unchanged: int
    deleted: int
    seconds: float
    failures: list[FailureOut] = Field(description="Sources skipped (pages of a sitemap, ...), with the reason")


class ProgressOut(BaseModel):
    stage: str = Field(description="The current stage: reading, extracting and chunking, embedding and storing")
    done: int
    total: int


class JobOut(BaseModel):
    id: str
    kb: str
    kind: JobKind = Field(description="upload (inputs are file names), urls, or sync (inputs: the source id)")
    inputs: list[str]
    state: JobState
    progress: ProgressOut
    summary: SummaryOut | None = Field(description="When done")
    error: str | None = Field(description="When failed: why; nothing was changed by the failed batch")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobsOut(BaseModel):
    jobs: list[JobOut]


def _summary(report: IngestReport | None) -> SummaryOut | None:
    if report is None:
        return None
    fields = asdict(report)
    fields["failures"] = [FailureOut(source=source, reason=reason) for source, reason in report.failures]
    return SummaryOut(**fields)


def _job(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        kb=job.kb,
        kind=job.kind,
        inputs=list(job.inputs),
        state=job.state,
        progress=ProgressOut(stage=job.stage, done=job.done, total=job.total),
        summary=_summary(job.report),
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


class DocumentOut(BaseModel):
    doc_id: str
    title: str
    source: str = Field(description="Path or URL; uploads are kept under SWITCHBOARD_DATA_DIR/uploads/<kb>/")
    origin: str = Field(description="What was ingested to find it (a folder, a sitemap, the file itself)")
    chunks: int


class DocumentsOut(BaseModel):
    kb: str
    documents: list[DocumentOut]


class FeedbackOut(BaseModel):
    answer_id: str
    bot: str
    channel: str
    conversation: str
    question: str
    answer: str
    citations: list[Citation] = Field(description="The sources shown with the answer")
    cited: bool = Field(description="False: the model cited nothing and the citations are the sources consulted")
    fallback: bool = Field(description="True: the model failed and the answer quotes passages")
    rating: Rating
    comment: str | None
    rated_at: datetime
    answered_at: datetime


class FeedbackListOut(BaseModel):
    feedback: list[FeedbackOut]


class ConversationOut(BaseModel):
    channel: str
    conversation: str
    answers: int
    last_question: str
    last_at: datetime


class ConversationsOut(BaseModel):
    bot: str
    conversations: list[ConversationOut]


class UrlsIn(CrawlIn):
    urls: list[Annotated[str, Field(max_length=2000)]] = Field(min_length=1, max_length=100)
    prune: bool = Field(False, description="Also remove documents these URLs (sitemaps, the crawl) no longer list")


# --- routes -----------------------------------------------------------------------------------------------


@router.get("/kbs")
async def list_kbs(knowledge: KnowledgeDep) -> KBsOut:
    """Knowledge bases with their document and chunk counts and how they were built."""
    with _store_errors():
        stats = await knowledge.kbs()
    return KBsOut(kbs=[KBOut(name=s.name, documents=s.documents, chunks=s.chunks, **asdict(s.meta)) for s in stats])


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            }
        },
    }
}


@router.post("/kbs/{kb}/uploads", status_code=202, openapi_extra=_UPLOAD_BODY, responses=_errors(400, 413, 415, 422))
async def upload(kb: KB, request: Request, state: StateDep, knowledge: KnowledgeDep) -> JobOut:
    """Upload files (the repeatable multipart field `files`) to ingest into the KB, which is created if new.

    Every file is checked first (type, size, not empty, a plain name); one bad file refuses the batch and
    nothing is written. A file with the name of an earlier upload updates that document. The answer is the
    queued job: follow it at GET /admin/jobs/{id}."""
    # The body is read here, after the key was checked, not by FastAPI before the dependencies run.
    async with request.form(max_files=MAX_FILES, max_fields=MAX_FILES) as form:
        return await submit_upload(kb, form, state)


async def submit_upload(kb: str, form: FormData, state: ServerState) -> JobOut:
    """Check and stage the form's `files`, and queue their ingestion (the admin console's uploads too)."""
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    try:
        check_uploads([(f.filename or "", f.size or 0) for f in files], state.settings)
    except UnsupportedSource as exc:
        raise HTTPException(415, str(exc)) from exc
    except UploadTooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except UploadRejected as exc:
        raise HTTPException(400, str(exc)) from exc
    batch = await asyncio.to_thread(stage, state.settings, kb, [(f.filename or "", f.file) for f in files])
    knowledge = state.assistant.knowledge

    async def work(progress: Progress) -> IngestReport:
        return await ingest_staged(knowledge, batch, kb=kb, progress=progress)

    names = [f.target.name for f in batch.files]
    return _job(await state.jobs.submit(kb=kb, kind="upload", inputs=names, work=work, cleanup=batch.discard))


@router.post("/kbs/{kb}/urls", status_code=202, responses=_errors(400, 422))
async def submit_urls(kb: KB, body: UrlsIn, state: StateDep, knowledge: KnowledgeDep) -> JobOut:
    """Fetch and ingest web pages, files by URL, or every page of a sitemap, into the KB (created if new); with
    `crawl`, the one URL is a start page crawled as `switchboard ingest URL --crawl` does (same host, depth, page
    cap, robots.txt). Pages read before are asked for conditionally: unchanged ones are not downloaded again.

    The answer is the queued job: follow it at GET /admin/jobs/{id}."""
    try:
        for url in body.urls:
            check_url(url)
        options = body.crawl_options()
        if body.crawl and len(body.urls) != 1:
            raise IngestError("crawl takes one start URL")
    except IngestError as exc:
        raise HTTPException(400, str(exc)) from exc
    crawl = options if body.crawl else None

    async def work(progress: Progress) -> IngestReport:
        return await knowledge.ingest(body.urls, kb=kb, prune=body.prune, crawl=crawl, progress=progress)

    return _job(await state.jobs.submit(kb=kb, kind="urls", inputs=body.urls, work=work))


@router.get("/jobs")
async def list_jobs(state: StateDep, kb: str | None = None) -> JobsOut:
    """Recent jobs, newest first (the latest 500, kept across restarts; every replica sees them)."""
    return JobsOut(jobs=[_job(job) for job in await state.jobs.recent(kb)])


@router.get("/jobs/{job_id}", responses=_errors(404))
async def get_job(job_id: str, state: StateDep) -> JobOut:
    """A job's state, progress of its current stage, and its summary or error."""
    job = await state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r} (only the latest 500 jobs are kept)")
    return _job(job)


@router.get("/kbs/{kb}/documents", responses=_errors(404, 422))
async def list_documents(kb: KB, knowledge: KnowledgeDep) -> DocumentsOut:
    """The KB's documents with their chunk counts, by source."""
    with _store_errors():
        documents = await knowledge.documents(kb)
    return DocumentsOut(kb=kb, documents=[DocumentOut(**asdict(d)) for d in documents])


DocId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="doc_id from the document listing")]


@router.delete("/kbs/{kb}/documents/{doc_id}", status_code=204, responses=_errors(404, 409, 422))
async def delete_document(kb: KB, doc_id: DocId, state: StateDep, knowledge: KnowledgeDep) -> Response:
    """Delete a document's chunks (and its kept file when it was uploaded). Refused with 409 while an
    ingestion job is queued or running on the KB."""
    try:
        async with state.jobs.exclusive(kb):
            with _store_errors():
                source = await knowledge.delete_document(kb, doc_id)
            if source is None:
                raise HTTPException(404, f"no document {doc_id} in knowledge base {kb!r}")
            await asyncio.to_thread(remove_upload, state.settings, kb, source)
    except KBBusy as exc:
        raise HTTPException(409, str(exc)) from exc
    return Response(status_code=204)


def _known_bot(state: ServerState, bot: str) -> None:
    if bot not in state.assistant.profiles:
        raise HTTPException(404, f"unknown bot {bot!r}; bots: {', '.join(sorted(state.assistant.profiles))}")


Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get("/feedback", responses=_errors(404, 422))
async def list_feedback(
    state: StateDep, bot: str | None = None, rating: Rating | None = None, limit: Limit = 100
) -> FeedbackListOut:
    """Feedback from every channel, newest first, each with the question, answer and sources it judges."""
    if bot is not None:
        _known_bot(state, bot)
    rated = await state.assistant.rated_answers(bot=bot, rating=rating, limit=limit)
    return FeedbackListOut(
        feedback=[
            FeedbackOut(
                answer_id=r.answer.id,
                bot=r.answer.bot,
                channel=r.answer.channel,
                conversation=r.answer.conversation,
                question=r.answer.question,
                answer=r.answer.answer,
                citations=list(r.answer.citations),
                cited=r.answer.cited,
                fallback=r.answer.fallback,
                rating=r.rating,
                comment=r.comment,
                rated_at=r.rated_at,
                answered_at=r.answer.created_at,
            )
            for r in rated
        ]
    )


@router.get("/conversations", responses=_errors(404, 422))
async def list_conversations(state: StateDep, bot: str, limit: Limit = 100) -> ConversationsOut:
    """A bot's conversations on every channel, the most recently active first."""
    _known_bot(state, bot)
    summaries = await state.assistant.conversations(ConversationQuery(bot=bot, limit=limit))
    return ConversationsOut(bot=bot, conversations=[ConversationOut(**asdict(c)) for c in summaries])


class ErasedOut(BaseModel):
    user_id: str
    channel: str | None = Field(description="The channel erased on; null: every channel")
    conversations: int = Field(description="Conversations the erased answers belonged to (their memory is erased)")
    answers: int
    feedback: int
    curated: int = Field(description="Questions promoted to curated answers as the user asked them")


UserId = Annotated[str, Path(min_length=1, max_length=200, description="The user id as the channel knows it")]


@router.delete("/users/{user_id:path}", responses=_errors(422))
async def forget_user(
    user_id: UserId,
    assistant: AssistantDep,
    channel: Annotated[str | None, Query(max_length=50, description="Only this channel; default: every one")] = None,
) -> ErasedOut:
    """Erase everything kept about a user (a data-subject request): the answers to their questions on every
    channel (or one), their feedback, and the memory of the conversations they asked in. Counts what went."""
    erased = await erase_user(assistant, user_id, channel)
    return ErasedOut(user_id=user_id, channel=channel, **asdict(erased))
