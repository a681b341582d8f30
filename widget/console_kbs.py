"""The console's Knowledge bases pages: the KBs, a KB's documents, registered sources (with their last sync) and
jobs, uploads, adding URLs, deleting a document, re-syncing a source.

Each action calls the admin API's own functions (widget.admin) with the same checks and refusals; this module
adds only the session, the CSRF check and the HTML.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from widget import admin, admin_sources
from widget.console_auth import PREFIX, SessionDep, check_csrf, page, router
from widget.deps import StateDep

Csrf = Annotated[str, Form(max_length=500)]


@router.get("/kbs")
async def kbs(request: Request, state: StateDep, session: SessionDep, kb: str = "") -> Response:
    """The KBs with their counts; `?kb=name` opens (or starts) one."""
    if kb:
        return RedirectResponse(f"{PREFIX}/kbs/{admin._kb(kb)}", status_code=303)
    listed = await admin.list_kbs(state.assistant.knowledge)
    return page(request, "console/kbs.html", active="kbs", csrf=session["csrf"], kbs=listed.kbs)


@router.get("/kbs/{kb}")
async def kb_page(request: Request, kb: admin.KB, state: StateDep, session: SessionDep) -> HTMLResponse:
    """A KB's documents (none yet: a KB that does not exist until its first ingestion) and its recent jobs."""
    try:
        documents = (await admin.list_documents(kb, state.assistant.knowledge)).documents
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        documents = []
    jobs = [admin._job(job) for job in await state.jobs.recent(kb)][:20]
    sources = (await admin_sources.list_sources(kb, state.sources)).sources
    return page(
        request,
        "console/kb.html",
        active="kbs",
        csrf=session["csrf"],
        kb=kb,
        documents=documents,
        jobs=jobs,
        sources=sources,
    )


@router.post("/kbs/{kb}/sources/{source_id}/sync")
async def sync_source(
    kb: admin.KB, source_id: admin_sources.SourceId, state: StateDep, session: SessionDep, csrf: Csrf = ""
) -> Response:
    """Re-sync a registered source now: the admin API's sync job (POST /admin/kbs/{kb}/sources/{id}/sync)."""
    check_csrf(csrf, session["csrf"])
    await admin_sources.sync(kb, source_id, state.sources, state, state.assistant.knowledge)
    return RedirectResponse(f"{PREFIX}/kbs/{kb}", status_code=303)


@router.post("/kbs/{kb}/urls")
async def add_urls(
    kb: admin.KB,
    state: StateDep,
    session: SessionDep,
    csrf: Csrf = "",
    urls: Annotated[str, Form(max_length=200_000)] = "",
    prune: Annotated[bool, Form()] = False,
) -> Response:
    """One URL a line (pages, files, sitemaps): queued as a job, like POST /admin/kbs/{kb}/urls."""
    check_csrf(csrf, session["csrf"])
    try:
        body = admin.UrlsIn(urls=[u.strip() for u in urls.splitlines() if u.strip()], prune=prune)
    except ValidationError as exc:
        raise HTTPException(422, f"urls: {exc.errors()[0]['msg']}") from exc
    await admin.submit_urls(kb, body, state, state.assistant.knowledge)
    return RedirectResponse(f"{PREFIX}/kbs/{kb}", status_code=303)


@router.post("/kbs/{kb}/uploads")
async def upload(request: Request, kb: admin.KB, state: StateDep, session: SessionDep) -> Response:
    """Files to ingest (the multipart field `files`), as POST /admin/kbs/{kb}/uploads: the same checks, a job."""
    # Read here, after the session was checked; the body limit is ADMIN_MAX_UPLOAD_MB (widget.admin.UPLOAD_PATH).
    async with request.form(max_files=admin.MAX_FILES, max_fields=admin.MAX_FILES + 1) as form:
        csrf = form.get("csrf")
        check_csrf(csrf if isinstance(csrf, str) else "", session["csrf"])
        await admin.submit_upload(kb, form, state)
    return RedirectResponse(f"{PREFIX}/kbs/{kb}", status_code=303)


@router.post("/kbs/{kb}/documents/{doc_id}/delete")
async def delete_document(
    kb: admin.KB, doc_id: admin.DocId, state: StateDep, session: SessionDep, csrf: Csrf = ""
) -> Response:
    check_csrf(csrf, session["csrf"])
    await admin.delete_document(kb, doc_id, state, state.assistant.knowledge)
    return RedirectResponse(f"{PREFIX}/kbs/{kb}", status_code=303)
