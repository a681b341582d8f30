"""The web server's HTTP API against the real server (uvicorn), real Weaviate and the scripted fake LLM:
sessions and origins, SSE chat, history, feedback, health, and every bad-input path → 4xx, never 500."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from core.answer.assistant import STORE_DOWN
from core.answer.log import AnswerLog
from core.config import Settings
from core.store.local import LocalWeaviate
from tests.conftest import web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer, run_server
from tests.support.ports import free_port_block
from widget.sessions import identity_hash


def session(web: RunningServer, origin: str | None, bot: str = "docs", **body: Any) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return httpx.post(f"{web.url}/api/session", json={"bot": bot, **body}, headers=headers, timeout=10)


def token_for(web: RunningServer, origin: str, **body: Any) -> str:
    response = session(web, origin, **body)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def chat(web: RunningServer, token: str, origin: str, message: str, conversation: str) -> httpx.Response:
    return httpx.post(
        f"{web.url}/api/chat",
        json={"message": message, "conversation_id": conversation},
        headers={"Authorization": f"Bearer {token}", "Origin": origin},
        timeout=30,
    )


def messages(web: RunningServer, token: str, conversation: str) -> list[dict[str, Any]]:
    """The conversation as GET /api/history returns it to this token's holder."""
    response = httpx.get(
        f"{web.url}/api/history",
        params={"conversation_id": conversation},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["messages"]
    return result


def test_sessions_follow_the_origin_policy(web: RunningServer, host_site: tuple[str, Path]) -> None:
    origin = host_site[0]
    minted = session(web, origin)
    assert minted.status_code == 200
    assert minted.json()["bot"] == {
        "name": "docs",
        "title": "Kestrel docs",
        "welcome": "Hi! Ask me about Kestrel.",
        "color": "#0f766e",
        "avatar": None,
        "position": "right",
        "voice": False,  # no `voice = true` in its widget table
        "speech": False,
    }
    assert session(web, web.url).status_code == 200  # the server's own pages
    refused = session(web, "https://evil.example")
    assert refused.status_code == 403 and "https://evil.example" in refused.json()["detail"]
    assert session(web, origin, bot="closed").status_code == 403  # production: no list means no other sites
    assert session(web, None).status_code == 403  # production: no origin, no session
    assert session(web, origin, bot="nobody").status_code == 404


def test_verified_user_identity_follows_the_user(
    web: RunningServer, host_site: tuple[str, Path], fake_llm: FakeOpenAI
) -> None:
    origin = host_site[0]
    good = {"id": "user_42%", "hash": identity_hash("user_42%", "test-identity-secret")}
    first = session(web, origin, user=good).json()
    assert "conversation_id" not in first  # never talked yet
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    assert chat(web, first["token"], origin, "Which port does the dashboard use?", "laptop-conversation").is_success

    other_browser = session(web, origin, user=good).json()  # no previous token: a new device
    assert other_browser["conversation_id"] == "laptop-conversation"
    history = messages(web, other_browser["token"], "laptop-conversation")
    assert [m["answer"] for m in history] == ["Port 8470 [1]."]

    someone_else = {"id": "user_4%", "hash": identity_hash("user_4%", "test-identity-secret")}
    assert "conversation_id" not in session(web, origin, user=someone_else).json()  # % and _ match literally
    forged = {"id": "user-43", "hash": good["hash"]}
    assert session(web, origin, user=forged).status_code == 401


def test_chat_streams_sse_and_history_and_feedback_are_per_session(
    web: RunningServer, host_site: tuple[str, Path], fake_llm: FakeOpenAI
) -> None:
    origin = host_site[0]
    token = token_for(web, origin)
    conversation = uuid.uuid4().hex
    fake_llm.enqueue(Reply(chunks=["The dashboard listens ", "on port 8470 [1]."]))
    response = chat(web, token, origin, "Which port does the Kestrel dashboard listen on?", conversation)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and set(kinds[1:-1]) == {"delta"}
    done = events[-1][1]
    assert done["text"] == "The dashboard listens on port 8470 [1]." and done["cited"] and not done["fallback"]
    assert done["citations"] == events[0][1]["sources"][:1]

    mine = messages(web, token, conversation)
    assert [(m["question"], m["answer_id"]) for m in mine] == [
        ("Which port does the Kestrel dashboard listen on?", done["answer_id"])
    ]
    other = token_for(web, origin)  # another visitor guessing the same conversation id sees nothing
    assert messages(web, other, conversation) == []

    def rate(as_token: str, **body: Any) -> int:
        return httpx.post(
            f"{web.url}/api/feedback",
            json={"answer_id": done["answer_id"], **body},
            headers={"Authorization": f"Bearer {as_token}"},
            timeout=10,
        ).status_code

    assert rate(other, rating="up") == 404
    assert rate(token, rating="down", comment="it is 8471 now") == 204
    log = AnswerLog(web.settings.data_dir / "answers.sqlite3")  # feedback lands next to the answer and sources
    record, feedback = asyncio.run(log.get(done["answer_id"])), asyncio.run(log.feedback(done["answer_id"]))
    assert record is not None and record.citations[0].n == 1
    assert feedback is not None and (feedback.rating, feedback.comment) == ("down", "it is 8471 now")

    forgotten = httpx.delete(
        f"{web.url}/api/conversations/{conversation}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert forgotten.status_code == 204


def expired_token(secret: str, origin: str) -> str:
    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 7200

    serializer = URLSafeTimedSerializer(secret, salt="switchboard.widget.session", signer=TwoHoursAgo)
    return serializer.dumps({"b": "docs", "s": "x", "u": None, "o": origin})


@pytest.mark.parametrize(
    ("headers", "body", "status", "detail"),
    [
        ({}, {"message": "hi", "conversation_id": "conv-12345"}, 401, "missing session token"),
        (
            {"Authorization": "Bearer forged.token.value"},
            {"message": "hi", "conversation_id": "conv-12345"},
            401,
            "invalid session token",
        ),
        ("expired", {"message": "hi", "conversation_id": "conv-12345"}, 401, "expired"),
        ("other-origin", {"message": "hi", "conversation_id": "conv-12345"}, 403, "another website"),
        ("token", b"{not json", 400, "not valid JSON"),
        ("token", {"message": "hi"}, 422, "conversation_id: Field required"),
        ("token", {"message": "hi", "conversation_id": "../../etc"}, 422, "conversation_id"),
        ("token", {"message": "   ", "conversation_id": "conv-12345"}, 422, "message is empty"),
        ("token", {"message": "x" * 2001, "conversation_id": "conv-12345"}, 422, "longer than 2000 characters"),
        ("token", {"message": "x" * 20000, "conversation_id": "conv-12345"}, 413, "request body too large"),
    ],
    ids=[
        "no-token",
        "forged",
        "expired",
        "wrong-origin",
        "bad-json",
        "missing-field",
        "bad-conversation",
        "empty",
        "too-long",
        "oversized-body",
    ],
)
def test_bad_requests_get_clear_4xx(
    web: RunningServer, host_site: tuple[str, Path], headers: Any, body: Any, status: int, detail: str
) -> None:
    origin = host_site[0]
    if headers == "expired":
        headers = {"Authorization": f"Bearer {expired_token('test-secret-key', origin)}"}
    elif headers == "other-origin":
        headers = {"Authorization": f"Bearer {token_for(web, web.url)}"}
    elif headers == "token":
        headers = {"Authorization": f"Bearer {token_for(web, origin)}"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        f"{web.url}/api/chat",
        content=content,
        headers={**headers, "Origin": origin, "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_oversized_chunked_body_gets_413_not_a_parse_error(web: RunningServer, host_site: tuple[str, Path]) -> None:
    """No Content-Length: the limit is enforced while the body streams in, and the app's own complaint about
    the cut-off body is replaced by the 413."""

    def body() -> Any:
        yield b'{"conversation_id": "conv-12345", "message": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    origin = host_site[0]
    for path in ("/api/chat", "/api/session"):
        response = httpx.post(
            f"{web.url}{path}",
            content=body(),
            headers={"Authorization": f"Bearer {token_for(web, origin)}", "Origin": origin},
            timeout=10,
        )
        assert response.status_code == 413, response.text
        assert "request body too large" in response.json()["detail"]


def test_rate_limit_bursts_get_429_with_retry_after(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path: Path
) -> None:
    origin = host_site[0]
    tight = web_settings(
        settings, fake_llm, origin, tmp_path, rate_limit_session="3/minute", rate_limit_ip="1000/minute"
    )
    with run_server(tight) as web:
        token = token_for(web, origin)
        statuses = []
        for _ in range(6):
            fake_llm.enqueue(Reply(chunks=["8470 [1]."]))
            response = chat(web, token, origin, "Which port does the dashboard use?", "burst-conversation")
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429, 429, 429]
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert "try again in" in response.json()["detail"]


def test_health_docs_and_widget(web: RunningServer) -> None:
    assert httpx.get(f"{web.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{web.url}/readyz", timeout=15)
    assert ready.status_code == 200 and ready.json()["weaviate"].startswith("ok (1.39.0)")
    assert ready.json()["weaviate_nodes"] == "ok (1/1 healthy at QUORUM)"  # one node, KBs with one replica
    assert httpx.get(f"{web.url}/docs").status_code == 404  # production: API_DOCS unset (tests/test_web_security.py)
    page = httpx.get(f"{web.url}/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert 'src="/widget.js"' in page.text
    bundle = httpx.get(f"{web.url}/widget.js")
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")


def test_readyz_is_ready_without_an_llm(
    settings: Settings, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path: Path
) -> None:
    """No LLM endpoint and no local model (the default compose file): answers quote passages, a supported mode."""
    passages = web_settings(
        settings,
        fake_llm,
        host_site[0],
        tmp_path,
        llm_base_url=None,
        llm_api_key=None,
        llm_model=None,
        llm_local_model_path=tmp_path / "no-model.gguf",
    )
    with run_server(passages) as web:
        ready = httpx.get(f"{web.url}/readyz", timeout=15)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready" and ready.json()["llm"] == "none: answers quote passages"


def test_weaviate_down_gives_an_sse_error_event_and_readyz_503(
    settings: Settings, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path: Path
) -> None:
    http_port, grpc_port = free_port_block()
    own = web_settings(
        settings,
        fake_llm,
        host_site[0],
        tmp_path,
        data_dir=tmp_path / "data",
        weaviate_local_port=http_port,
        weaviate_local_grpc_port=grpc_port,
    )
    local = LocalWeaviate.from_settings(own)
    local.start()
    try:
        with run_server(own) as web:
            token = token_for(web, host_site[0])
            local.stop()
            response = chat(web, token, host_site[0], "Which port does the dashboard use?", "down-conversation")
            assert response.status_code == 200
            assert sse_events(response) == [("error", {"message": STORE_DOWN})]
            ready = httpx.get(f"{web.url}/readyz", timeout=15)
            assert ready.status_code == 503 and ready.json()["weaviate"].startswith("unavailable")
    finally:
        local.stop()
