"""The admin API against the real server (uvicorn), real Weaviate and the real embedder: uploads and URLs as
jobs, documents, feedback and conversations, and every refusal → a 4xx that says why, with nothing written."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from core.answer.log import AnswerLog
from core.config import Settings
from core.embed import Embedder
from core.store.client import Store
from core.store.local import LocalWeaviate
from core.store.search import SearchOptions, retrieve
from core.types import Citation
from tests.conftest import StateBackend, loopback_allowed, web_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.servers import RunningServer, run_server
from tests.support.cli import cli_environment, serve_process
from tests.test_extract import make_pdf
from widget.jobs import LEASE_SECONDS, STOPPED
from widget.settings import WebSettings

KEY = "admin-key-for-tests-0123456789"
Files = list[tuple[str, tuple[str, bytes]]]


@pytest.fixture(scope="module")
def admin(
    settings: Settings,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """Small limits so that refusals are cheap to provoke: 50 KB per file, 200 KB per upload request."""
    tmp = tmp_path_factory.mktemp("admin")
    # The test sites are on 127.0.0.1, an internal address URL ingestion refuses unless opted in.
    limits = {"max_file_mb": 0.05, "admin_max_upload_mb": 0.2, "ingest_allowed_hosts": ("127.0.0.1",)}
    # Production serves /openapi.json only with API_DOCS=true: test_openapi_documents_the_admin_api reads it.
    admin_settings = web_settings(settings, fake_llm, host_site[0], tmp, admin_api_key=SecretStr(KEY), api_docs=True)
    with run_server(admin_settings.model_copy(update=limits)) as s:
        yield s


def call(server: RunningServer, method: str, path: str, key: str | None = KEY, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(
        method, f"{server.url}{path}", headers=headers | kwargs.pop("headers", {}), timeout=30, **kwargs
    )


def post_json(server: RunningServer, path: str, body: object) -> httpx.Response:
    """JSON as a client writes it, escapes included: httpx's json= cannot encode a lone surrogate at all."""
    return call(server, "POST", path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def files(*named: tuple[str, bytes]) -> Files:
    return [("files", (name, data)) for name, data in named]


def upload(server: RunningServer, kb: str, *named: tuple[str, bytes]) -> httpx.Response:
    return call(server, "POST", f"/admin/kbs/{kb}/uploads", files=files(*named))


def finished(server: RunningServer, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, Any] = call(server, "GET", f"/admin/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def ingested(server: RunningServer, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    return finished(server, response.json()["id"])


def documents(server: RunningServer, kb: str) -> dict[str, dict[str, Any]]:
    response = call(server, "GET", f"/admin/kbs/{kb}/documents")
    assert response.status_code == 200, response.text
    return {Path(d["source"]).name: d for d in response.json()["documents"]}


def uploads_dir(server: RunningServer) -> Path:
    return server.settings.data_dir / "uploads"


def assert_nothing_written(server: RunningServer, kb: str) -> None:
    assert call(server, "GET", f"/admin/kbs/{kb}/documents").status_code == 404
    assert not (uploads_dir(server) / kb).exists()
    assert not any((uploads_dir(server) / ".staging").glob("*/*"))


async def found(store: Store, embedder: Embedder, kb: str, query: str) -> list[str]:
    sources = await retrieve(store, embedder, kb, query, SearchOptions(top_k=3, alpha=0.75))
    return [Path(s.source).name for s in sources]


GUIDE = b"# Setup guide\n\nThe kestrel daemon reads kestrel.toml from /etc/kestrel on start.\n"
NOTES = b"Release notes: the kestrel scheduler now retries failed tasks three times.\n"


# --- the main job: upload → job → documents → search → delete ---------------------------------------------


async def test_upload_ingest_list_search_update_delete(
    admin: RunningServer, store: Store, embedder: Embedder, kb: str
) -> None:
    pdf = make_pdf(["The emergency stop is the red lever beside the kestrel conveyor."], title="Field Manual")
    job = ingested(admin, upload(admin, kb, ("guide.md", GUIDE), ("notes.txt", NOTES), ("manual.pdf", pdf)))
    assert job["state"] == "done" and job["error"] is None and job["kind"] == "upload"
    assert job["inputs"] == ["guide.md", "notes.txt", "manual.pdf"]
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    summary = job["summary"]
    assert (summary["documents"], summary["failures"]) == (3, []) and summary["added"] >= 3
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["id"] in [j["id"] for j in call(admin, "GET", "/admin/jobs", params={"kb": kb}).json()["jobs"]]

    docs = documents(admin, kb)
    assert set(docs) == {"guide.md", "notes.txt", "manual.pdf"}
    assert (docs["guide.md"]["title"], docs["manual.pdf"]["title"]) == ("Setup guide", "Field Manual")
    assert all(d["chunks"] >= 1 for d in docs.values())
    kept = uploads_dir(admin) / kb
    assert (kept / "guide.md").read_bytes() == GUIDE and docs["guide.md"]["source"] == str(kept / "guide.md")
    kbs = {k["name"]: k for k in call(admin, "GET", "/admin/kbs").json()["kbs"]}
    assert kbs[kb]["documents"] == 3 and kbs[kb]["embed_model"] == embedder.name
    assert (await found(store, embedder, kb, "emergency stop lever"))[0] == "manual.pdf"

    # A failed batch changes nothing: not the stored chunks, not the kept file of the same name.
    failed = ingested(admin, upload(admin, kb, ("guide.md", b"# Setup guide\n\nChanged.\n"), ("bad.pdf", b"no")))
    assert failed["state"] == "failed" and "bad.pdf: unreadable PDF" in failed["error"]
    assert failed["summary"] is None
    assert documents(admin, kb) == docs and (kept / "guide.md").read_bytes() == GUIDE
    assert not (kept / "bad.pdf").exists()

    # The same name again updates that document in place.
    new_guide = b"# Setup guide\n\nThe kestrel daemon now reads its settings from environment variables.\n"
    again = ingested(admin, upload(admin, kb, ("guide.md", new_guide)))
    assert again["state"] == "done" and again["summary"]["updated"] == 1
    updated = documents(admin, kb)
    assert set(updated) == set(docs) and updated["guide.md"]["doc_id"] == docs["guide.md"]["doc_id"]
    assert (kept / "guide.md").read_bytes() == new_guide
    assert (await found(store, embedder, kb, "settings from environment variables"))[0] == "guide.md"

    gone = call(admin, "DELETE", f"/admin/kbs/{kb}/documents/{docs['manual.pdf']['doc_id']}")
    assert gone.status_code == 204, gone.text
    assert set(documents(admin, kb)) == {"guide.md", "notes.txt"}
    assert "manual.pdf" not in await found(store, embedder, kb, "emergency stop lever")
    assert not (kept / "manual.pdf").exists()
    again_gone = call(admin, "DELETE", f"/admin/kbs/{kb}/documents/{docs['manual.pdf']['doc_id']}")
    assert again_gone.status_code == 404 and "no document" in again_gone.json()["detail"]


def test_url_ingestion(admin: RunningServer, host_site: tuple[str, Path], kb: str) -> None:
    base, root = host_site
    page = f"admin-{uuid.uuid4().hex[:8]}.html"
    (root / page).write_text("<html><title>Herons</title><body><main><p>Herons nest in colonies.</p></main></html>")
    job = ingested(admin, call(admin, "POST", f"/admin/kbs/{kb}/urls", json={"urls": [f"{base}/{page}"]}))
    assert job["state"] == "done" and job["kind"] == "urls" and job["summary"]["documents"] == 1
    assert [d["source"] for d in documents(admin, kb).values()] == [f"{base}/{page}"]

    missing = ingested(admin, call(admin, "POST", f"/admin/kbs/{kb}/urls", json={"urls": [f"{base}/nope.html"]}))
    assert missing["state"] == "failed" and "HTTP 404" in missing["error"]
    assert len(documents(admin, kb)) == 1


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:9/", "http://[::1]:22/"])
def test_url_ingestion_refuses_internal_addresses(admin: RunningServer, kb: str, url: str) -> None:
    job = ingested(admin, call(admin, "POST", f"/admin/kbs/{kb}/urls", json={"urls": [url]}))
    assert job["state"] == "failed" and job["error"].startswith(f"{url}: refused: internal address (")
    assert call(admin, "GET", f"/admin/kbs/{kb}/documents").status_code == 404


@pytest.mark.parametrize(
    ("urls", "status", "message"),
    [
        (["ftp://example.org/a.md"], 400, "only http(s) URLs can be ingested"),
        (["just words"], 400, "only http(s) URLs can be ingested"),
        (["http:///path-without-host"], 400, "not a valid URL"),
        (["http://[::1/"], 400, "not a valid URL"),
        (["http://example.org:99999/"], 400, "not a valid URL"),
        (["http://example.org/\ud800"], 422, "unicode string"),  # a JSON-escaped lone surrogate
        ([], 422, "urls"),
    ],
)
def test_bad_urls_are_refused(admin: RunningServer, kb: str, urls: list[str], status: int, message: str) -> None:
    response = post_json(admin, f"/admin/kbs/{kb}/urls", {"urls": urls})
    assert response.status_code == status and message in response.json()["detail"]
    assert call(admin, "GET", "/admin/jobs", params={"kb": kb}).json()["jobs"] == []


# --- refusals: a clear 4xx, and nothing written or ingested -----------------------------------------------

GOOD = ("good.md", b"# Good\n\nA perfectly fine document.\n")


@pytest.mark.parametrize(
    ("parts", "status", "message"),
    [
        (files(GOOD, ("tool.exe", b"MZ")), 415, "tool.exe: unsupported file type '.exe'; supported: .docx"),
        (
            files(GOOD, ("big.txt", b"x" * 60_000)),
            413,
            "big.txt: 0.06 MB is over the 0.05 MB limit",
        ),
        (files(GOOD, ("empty.txt", b"")), 400, "empty.txt: the file is empty"),
        (files(("../evil.md", b"# Evil\n")), 400, "'../evil.md' is not a usable file name"),
        (files(("sub/dir.md", b"# Sub\n")), 400, "is not a usable file name"),
        (files((".hidden.md", b"# Hidden\n")), 400, "is not a usable file name"),
        (files(GOOD, GOOD), 400, "good.md: sent twice in one upload"),
        (files(("huge.md", b"x" * 250_000)), 413, "request body too large (the limit is 200000 bytes)"),
        ([], 400, "no files"),
    ],
)
def test_bad_uploads_are_refused_whole(admin: RunningServer, kb: str, parts: Files, status: int, message: str) -> None:
    extra = {} if parts else {"data": {"note": "a form without files"}}
    response = call(admin, "POST", f"/admin/kbs/{kb}/uploads", files=parts or None, **extra)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert_nothing_written(admin, kb)


def test_unreadable_file_fails_the_job_and_keeps_nothing(admin: RunningServer, kb: str) -> None:
    job = ingested(admin, upload(admin, kb, GOOD, ("broken.pdf", b"not a pdf")))
    assert job["state"] == "failed" and "broken.pdf: unreadable PDF" in job["error"]
    assert_nothing_written(admin, kb)


def test_auth_is_required(admin: RunningServer, kb: str) -> None:
    missing = call(admin, "GET", "/admin/kbs", key=None)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "missing admin key" in missing.json()["detail"]
    basic = httpx.get(f"{admin.url}/admin/kbs", headers={"Authorization": f"Basic {KEY}"}, timeout=10)
    assert basic.status_code == 401
    wrong = call(admin, "GET", "/admin/kbs", key=KEY + "x")
    assert (wrong.status_code, wrong.json()["detail"]) == (403, "wrong admin key")
    anonymous_upload = call(admin, "POST", f"/admin/kbs/{kb}/uploads", key=None, files=files(GOOD))
    assert anonymous_upload.status_code == 401
    assert_nothing_written(admin, kb)


def test_disabled_without_a_key(web: RunningServer) -> None:
    for method, path in (("GET", "/admin/kbs"), ("GET", "/admin/feedback"), ("POST", "/admin/kbs/docs/uploads")):
        response = call(web, method, path)
        assert (response.status_code, response.json()["detail"]) == (503, "admin API disabled: set ADMIN_API_KEY")


def test_unknown_and_malformed_names(admin: RunningServer, kb: str) -> None:
    unknown_kb = call(admin, "GET", f"/admin/kbs/{kb}/documents")
    assert unknown_kb.status_code == 404 and f"knowledge base {kb!r} does not exist" in unknown_kb.json()["detail"]
    bad_kb = call(admin, "GET", "/admin/kbs/Bad-Name/documents")
    assert bad_kb.status_code == 422 and "invalid knowledge base name" in bad_kb.json()["detail"]
    assert call(admin, "POST", "/admin/kbs/Bad-Name/uploads", files=files(GOOD)).status_code == 422
    job = call(admin, "GET", f"/admin/jobs/{uuid.uuid4().hex}")
    assert job.status_code == 404 and "no job" in job.json()["detail"]
    assert call(admin, "DELETE", f"/admin/kbs/{kb}/documents/{'0' * 32}").status_code == 404
    assert call(admin, "DELETE", f"/admin/kbs/{kb}/documents/not-an-id").status_code == 422


# --- one job at a time per KB -----------------------------------------------------------------------------


@pytest.fixture
def slow_page() -> Iterator[tuple[str, threading.Event]]:
    """A page that is served only once the test releases it: keeps an ingestion job running."""
    release = threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(60)
            body = b"# Slow\n\nA page that took its time.\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/markdown")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow.md", release
    release.set()
    server.shutdown()


def wait_for_state(server: RunningServer, job_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while call(server, "GET", f"/admin/jobs/{job_id}").json()["state"] != state:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_jobs_queue_per_kb_and_refuse_deletes_meanwhile(
    admin: RunningServer, kb: str, slow_page: tuple[str, threading.Event]
) -> None:
    url, release = slow_page
    assert ingested(admin, upload(admin, kb, GOOD))["state"] == "done"
    doc_id = documents(admin, kb)["good.md"]["doc_id"]
    running = call(admin, "POST", f"/admin/kbs/{kb}/urls", json={"urls": [url]}).json()
    wait_for_state(admin, running["id"], "running")
    queued = upload(admin, kb, ("later.md", b"# Later\n\nQueued behind the slow page.\n")).json()
    assert call(admin, "GET", f"/admin/jobs/{queued['id']}").json()["state"] == "queued"
    other_kb = ingested(admin, upload(admin, f"{kb}_other", GOOD))  # other KBs are not held up
    assert other_kb["state"] == "done"

    busy = call(admin, "DELETE", f"/admin/kbs/{kb}/documents/{doc_id}")
    assert busy.status_code == 409 and "ingestion job is queued or running" in busy.json()["detail"]
    release.set()
    assert finished(admin, running["id"])["state"] == "done"
    assert finished(admin, queued["id"])["state"] == "done"
    assert set(documents(admin, kb)) == {"good.md", "slow.md", "later.md"}
    assert call(admin, "DELETE", f"/admin/kbs/{kb}/documents/{doc_id}").status_code == 204


# --- feedback and conversations ---------------------------------------------------------------------------


CITATION = Citation(n=1, title="Install", source="/docs/install.md", section="Docker", snippet="Run it.")


async def answered(server: RunningServer, channel: str, conversation: str, question: str, answer: str) -> str:
    """An answer of the `closed` bot, recorded as any channel records one (the answer log is shared)."""
    log = AnswerLog(server.settings.data_dir / "answers.sqlite3")
    return await log.record(
        channel=channel,
        conversation=conversation,
        bot="closed",
        question=question,
        answer=answer,
        citations=(CITATION,),
        cited=True,
        fallback=False,
    )


async def test_feedback_with_its_answer_and_conversations(admin: RunningServer) -> None:
    conversation, other = f"admin-test-{uuid.uuid4().hex}", f"admin-test-{uuid.uuid4().hex}"
    first = await answered(admin, "slack", conversation, "How do I install?", "Run the installer [1].")
    second = await answered(admin, "slack", conversation, "And on Docker?", "Use the image [1].")
    await answered(admin, "widget", other, "Hello?", "Hi [1].")
    log = AnswerLog(admin.settings.data_dir / "answers.sqlite3")
    await log.add_feedback(first, "down", "Wrong installer")
    await log.add_feedback(second, "up")

    down = call(admin, "GET", "/admin/feedback", params={"bot": "closed", "rating": "down", "limit": 1000}).json()
    mine = [f for f in down["feedback"] if f["answer_id"] == first]
    assert len(mine) == 1 and all(f["rating"] == "down" for f in down["feedback"])
    assert mine[0] | {"rated_at": None, "answered_at": None} == {
        "answer_id": first,
        "bot": "closed",
        "channel": "slack",
        "conversation": conversation,
        "question": "How do I install?",
        "answer": "Run the installer [1].",
        "citations": [CITATION.__dict__],
        "cited": True,
        "fallback": False,
        "rating": "down",
        "comment": "Wrong installer",
        "rated_at": None,
        "answered_at": None,
    }
    newest = call(admin, "GET", "/admin/feedback", params={"limit": 1}).json()["feedback"]
    assert [f["answer_id"] for f in newest] == [second]
    assert all(f["bot"] == "docs" for f in call(admin, "GET", "/admin/feedback?bot=docs").json()["feedback"])

    listed = call(admin, "GET", "/admin/conversations", params={"bot": "closed"}).json()
    assert listed["bot"] == "closed"
    rows = {c["conversation"]: c for c in listed["conversations"]}
    assert (rows[conversation]["answers"], rows[conversation]["last_question"]) == (2, "And on Docker?")
    assert (rows[other]["channel"], rows[other]["answers"]) == ("widget", 1)
    order = [c["conversation"] for c in listed["conversations"]]
    assert order.index(other) < order.index(conversation)  # the most recently active first
    assert len(call(admin, "GET", "/admin/conversations?bot=closed&limit=1").json()["conversations"]) == 1


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/admin/feedback?bot=nobody", 404, "unknown bot 'nobody'; bots: closed, default, docs"),
        ("/admin/conversations?bot=nobody", 404, "unknown bot 'nobody'"),
        ("/admin/feedback?rating=meh", 422, "rating"),
        ("/admin/feedback?limit=0", 422, "limit"),
        ("/admin/conversations", 422, "bot"),
    ],
)
def test_bad_listing_filters(admin: RunningServer, path: str, status: int, message: str) -> None:
    response = call(admin, "GET", path)
    assert response.status_code == status and message in response.json()["detail"]


# --- documentation and settings ---------------------------------------------------------------------------


def test_openapi_documents_the_admin_api(admin: RunningServer) -> None:
    spec = httpx.get(f"{admin.url}/openapi.json", timeout=10).json()
    admin_paths = {path: ops for path, ops in spec["paths"].items() if path.startswith("/admin/")}
    assert set(admin_paths) == {
        "/admin/kbs",
        "/admin/kbs/{kb}/uploads",
        "/admin/kbs/{kb}/urls",
        "/admin/jobs",
        "/admin/jobs/{job_id}",
        "/admin/kbs/{kb}/documents",
        "/admin/kbs/{kb}/documents/{doc_id}",
        "/admin/feedback",
        "/admin/conversations",
        "/admin/users/{user_id}",
        "/admin/kbs/{kb}/sources",
        "/admin/kbs/{kb}/sources/{source_id}",
        "/admin/kbs/{kb}/sources/{source_id}/sync",
        "/admin/answers/{answer_id}/promote",
        "/admin/curated",
        "/admin/curated/{curated_id}",
    }
    operations = [op for ops in admin_paths.values() for op in ops.values()]
    assert all(op["tags"] == ["Admin"] and op["security"] == [{"HTTPBearer": []}] for op in operations)
    upload_op = admin_paths["/admin/kbs/{kb}/uploads"]["post"]
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    assert {"202", "413", "415"} <= set(upload_op["responses"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_admin_key_settings() -> None:
    with pytest.raises(ValidationError, match="ADMIN_API_KEY must be at least 16 characters"):
        WebSettings(_env_file=None, admin_api_key="short")
    with pytest.raises(ValidationError, match="ADMIN_API_KEY still holds the placeholder"):
        WebSettings(_env_file=None, environment="production", secret_key="s3cret", admin_api_key="change-me-" * 2)
    assert WebSettings(_env_file=None, max_file_mb=3).admin_upload_bytes == 3_000_000


def test_streamed_upload_over_the_limit(admin: RunningServer, kb: str) -> None:
    """No Content-Length (chunked): the limit is enforced while the body is read."""
    boundary = "upload-boundary"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="huge.md"\r\n'
            "Content-Type: text/markdown\r\n\r\n"
        ).encode()
        for _ in range(30):
            yield b"x" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{admin.url}/admin/kbs/{kb}/uploads",
        content=body(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert response.status_code == 413 and "request body too large" in response.json()["detail"]
    assert_nothing_written(admin, kb)


# --- job records survive restarts -------------------------------------------------------------------------


def test_job_records_survive_a_restart(
    settings: Settings,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path: Path,
    kb: str,
    slow_page: tuple[str, threading.Event],
) -> None:
    own = web_settings(settings, fake_llm, host_site[0], tmp_path, admin_api_key=SecretStr(KEY))
    own = loopback_allowed(own)
    with run_server(own) as first:
        done = ingested(first, upload(first, kb, GOOD))
        cut = call(first, "POST", f"/admin/kbs/{kb}/urls", json={"urls": [slow_page[0]]}).json()
        wait_for_state(first, cut["id"], "running")
    with run_server(own) as second:  # the first stopped with a job running: it says so, and why
        assert call(second, "GET", f"/admin/jobs/{done['id']}").json() == done
        stopped = call(second, "GET", f"/admin/jobs/{cut['id']}").json()
        assert stopped["state"] == "failed" and stopped["error"] == STOPPED and stopped["inputs"] == [slow_page[0]]
        listed = [j["id"] for j in call(second, "GET", "/admin/jobs", params={"kb": kb}).json()["jobs"]]
        assert listed == [cut["id"], done["id"]]


def test_a_job_of_a_killed_server_reads_as_interrupted(
    state: StateBackend,
    settings: Settings,
    fake_llm: FakeOpenAI,
    tmp_path: Path,
    kb: str,
    slow_page: tuple[str, threading.Event],
) -> None:
    weaviate = LocalWeaviate.from_settings(settings)  # the session's, as an external server
    env = cli_environment(settings) | {
        "SWITCHBOARD_DATA_DIR": str(state.settings.data_dir),
        "WEAVIATE_URL": weaviate.url,
        "WEAVIATE_GRPC_PORT": str(settings.weaviate_local_grpc_port),
        "WEAVIATE_API_KEY": weaviate.api_key,
        "ADMIN_API_KEY": KEY,
        "INGEST_ALLOWED_HOSTS": "127.0.0.1",
        "LLM_BASE_URL": fake_llm.base_url,  # no local model server to start
        "LLM_API_KEY": "sk-test",
    }
    if state.settings.redis_url is not None:
        env["REDIS_URL"] = state.settings.redis_url.get_secret_value()
    with serve_process(env, tmp_path) as first:
        server = RunningServer(url=first.url, settings=settings)
        job = call(server, "POST", f"/admin/kbs/{kb}/urls", json={"urls": [slow_page[0]]}).json()
        wait_for_state(server, job["id"], "running")
        os.kill(first.pid, signal.SIGKILL)
    with serve_process(env, tmp_path) as second:
        server = RunningServer(url=second.url, settings=settings)
        # Running until its lease (renewed by the dead server) runs out, then failed for good.
        wait_for_state(server, job["id"], "failed", timeout=LEASE_SECONDS + 15)
        seen = call(server, "GET", f"/admin/jobs/{job['id']}").json()
        assert seen["error"] == STOPPED and seen["kb"] == kb and seen["inputs"] == [slow_page[0]]
