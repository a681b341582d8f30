"""The web server's security edges against the real server: signing secrets on the default setup, conversation
keys that cannot collide across users, origins never taken from the Host header, rate limits on every session
call, API docs (off in production, Swagger UI from this server), response headers, private files."""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from playwright.async_api import async_playwright
from pydantic import ValidationError

from core.answer.log import AnswerLog
from core.config import Settings
from core.process import secret_file
from core.sqlite import init_db
from core.store.local import LocalWeaviate
from tests.conftest import web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer, run_server
from tests.support import REPO
from tests.support.cli import cli_environment, serve_process
from tests.test_server_api import sse_events
from tests.test_widget_browser import CHROMIUM_FLAGS
from widget.sessions import identity_hash
from widget.settings import WebSettings

PUBLIC = "https://chat.example.com"
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))  # each call its own client, as a proxy reports it


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def session(url: str, origin: str | None, *, host: str | None = None, bot: str = "docs", **body: Any) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    if host is not None:
        headers["Host"] = host
    headers["X-Forwarded-For"] = next(_addresses)
    return httpx.post(f"{url}/api/session", json={"bot": bot, **body}, headers=headers, timeout=10)


def token_for(url: str, origin: str, **body: Any) -> str:
    minted = session(url, origin, **body)
    assert minted.status_code == 200, minted.text
    return str(minted.json()["token"])


def history(url: str, token: str, conversation: str, client: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": client or next(_addresses)}
    return httpx.get(f"{url}/api/history", params={"conversation_id": conversation}, headers=headers, timeout=10)


# --- 1. signing secrets: the default setup signs with a random secret of its own ---------------------------------


def forged(secret: str, origin: str, user: str | None) -> str:
    """A session token as anyone who read .env.example could sign it."""
    serializer = URLSafeTimedSerializer(secret, salt="switchboard.widget.session")
    return serializer.dumps({"b": "default", "s": "x" * 22, "u": user, "o": origin})


def test_a_server_from_the_example_env_refuses_tokens_forged_with_the_placeholder(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env")  # verbatim: development, as a new user starts
    weaviate = LocalWeaviate.from_settings(settings)
    data = tmp_path / "data"
    env = cli_environment(settings) | {
        "SWITCHBOARD_DATA_DIR": str(data),  # a fresh one: the secret is generated into it
        "WEAVIATE_URL": weaviate.url,
        "WEAVIATE_GRPC_PORT": str(settings.weaviate_local_grpc_port),
        "WEAVIATE_API_KEY": weaviate.api_key,
        "SWITCHBOARD_KB": widget_kb,
        "LLM_BASE_URL": fake_llm.base_url,
        "LLM_API_KEY": "sk-test",
        "LLM_MODEL": "fake-chat",
    }
    with serve_process(env, tmp_path) as server:
        origin = server.url
        fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
        real = token_for(server.url, origin, bot="default")
        asked = httpx.post(
            f"{server.url}/api/chat",
            json={"message": "Which port does the dashboard use?", "conversation_id": "conv-12345"},
            headers={"Authorization": f"Bearer {real}", "Origin": origin},
            timeout=30,
        )
        assert asked.status_code == 200 and "event: done" in asked.text
        assert history(server.url, real, "conv-12345").status_code == 200

        for secret in ("change-me", ""):  # the old .env.example value, and an empty key
            refused = history(server.url, forged(secret, origin, "victim"), "conv-12345")
            assert refused.status_code == 401 and "invalid session token" in refused.json()["detail"]
        # Nor can anyone mint a "verified" identity: IDENTITY_SECRET is empty, not change-me.
        claimed = {"id": "victim", "hash": identity_hash("victim", "change-me")}
        assert session(server.url, origin, bot="default", user=claimed).status_code == 401

        generated = data / "session-secret"
        assert len(generated.read_text()) >= 32 and mode(generated) == 0o600 and mode(data) == 0o700
        databases = sorted(data.glob("*.sqlite3*"))
        assert {p.name for p in databases} >= {"answers.sqlite3", "history.sqlite3", "api-keys.sqlite3"}
        assert {p.name: mode(p) for p in databases} == {p.name: 0o600 for p in databases}  # -wal, -shm included


def test_secret_files_and_databases_left_readable_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    old = data / "session-secret"
    old.write_text("an-older-secret")
    old.chmod(0o644)
    assert secret_file(old) == "an-older-secret"
    assert mode(old) == 0o600 and mode(data) == 0o700

    empty = data / "empty-secret"  # a crash between creating and writing it
    empty.touch()
    assert len(secret_file(empty)) >= 32 and secret_file(empty) == empty.read_text()

    fresh = secret_file(tmp_path / "new" / "nested" / "secret")
    assert len(fresh) >= 32 and mode(tmp_path / "new" / "nested") == 0o700

    database = data / "answers.sqlite3"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE t (x)")
    database.chmod(0o644)
    init_db(database, "CREATE TABLE IF NOT EXISTS u (y);")
    assert mode(database) == 0o600


# --- 2. conversation keys: user `bob` is not a prefix of user `bob:admin` ----------------------------------------


def test_verified_users_whose_ids_share_a_prefix_keep_their_conversations_apart(
    web: RunningServer, host_site: tuple[str, Path], fake_llm: FakeOpenAI
) -> None:
    origin = host_site[0]

    def user(name: str) -> dict[str, str]:
        return {"id": name, "hash": identity_hash(name, "test-identity-secret")}

    admin = session(web.url, origin, user=user("bob:admin")).json()
    fake_llm.enqueue(Reply(chunks=["Admin-only: port 8470 [1]."]))
    asked = httpx.post(
        f"{web.url}/api/chat",
        json={"message": "Which port does the dashboard use?", "conversation_id": "admin-conversation"},
        headers={"Authorization": f"Bearer {admin['token']}", "Origin": origin},
        timeout=30,
    )
    answer_id = sse_events(asked)[-1][1]["answer_id"]
    record = asyncio.run(AnswerLog(web.settings.data_dir / "answers.sqlite3").get(answer_id))
    assert record is not None and record.conversation == "docs:u:bob%3Aadmin:admin-conversation"

    bob = session(web.url, origin, user=user("bob")).json()
    assert "conversation_id" not in bob  # admin's latest conversation does not follow bob
    assert session(web.url, origin, user=user("bob:admin")).json()["conversation_id"] == "admin-conversation"

    def rate(token: str) -> int:
        return httpx.post(
            f"{web.url}/api/feedback",
            json={"answer_id": answer_id, "rating": "down"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).status_code

    assert rate(bob["token"]) == 404
    assert rate(admin["token"]) == 204
    assert history(web.url, bob["token"], "admin-conversation").json()["messages"] == []

    # Ids without `:` or `%` keep the keys they always had, so existing history stays reachable.
    alice = session(web.url, origin, user=user("alice@example.com")).json()
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    asked = httpx.post(
        f"{web.url}/api/chat",
        json={"message": "Which port?", "conversation_id": "alice-conversation"},
        headers={"Authorization": f"Bearer {alice['token']}", "Origin": origin},
        timeout=30,
    )
    answer_id = sse_events(asked)[-1][1]["answer_id"]
    record = asyncio.run(AnswerLog(web.settings.data_dir / "answers.sqlite3").get(answer_id))
    assert record is not None and record.conversation == "docs:u:alice@example.com:alice-conversation"


# --- 3. origins: the configured ones, never the request's Host header ---------------------------------------------


def test_the_host_header_does_not_make_an_origin_the_servers_own_in_production(web: RunningServer) -> None:
    refused = session(web.url, "http://evil.example", host="evil.example")
    assert refused.status_code == 403 and "http://evil.example" in refused.json()["detail"]
    assert session(web.url, web.url, host="evil.example").status_code == 200  # the server's real address


@pytest.fixture(scope="module")
def dev_web(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """Development mode, with the docs bot's allowed_origins (so other sites are refused even here)."""
    tmp = tmp_path_factory.mktemp("dev-web")
    with run_server(web_settings(settings, fake_llm, host_site[0], tmp, environment="development")) as running:
        yield running


def test_the_host_header_does_not_make_an_origin_the_servers_own_in_development(dev_web: RunningServer) -> None:
    port = dev_web.settings.server_port
    assert session(dev_web.url, "http://evil.example", host="evil.example").status_code == 403
    assert session(dev_web.url, f"http://evil.example:{port}", host=f"evil.example:{port}").status_code == 403
    for alias in (dev_web.url, f"http://localhost:{port}", f"http://[::1]:{port}"):
        assert session(dev_web.url, alias, host="evil.example").status_code == 200, alias


def test_development_lets_only_local_pages_embed_a_bot_without_allowed_origins(dev_web: RunningServer) -> None:
    # `closed` lists no allowed_origins: a developer's own test pages may use it, a site they happen to visit not.
    for local in ("http://localhost:3000", "http://127.0.0.1:5173", "http://[::1]:8080", "http://app.localhost"):
        assert session(dev_web.url, local, bot="closed").status_code == 200, local
    for remote in ("http://evil.example", "https://127.0.0.1.evil.example", "http://10.0.0.5:8000"):
        assert session(dev_web.url, remote, bot="closed").status_code == 403, remote


@pytest.fixture(scope="module")
def public_web(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """Production behind PUBLIC_URL, with the API docs turned on and tight limits."""
    tmp = tmp_path_factory.mktemp("public-web")
    tight = web_settings(
        settings,
        fake_llm,
        host_site[0],
        tmp,
        public_url=(PUBLIC,),
        api_docs=True,
        rate_limit_session="3/minute",
        rate_limit_ip="3/minute",
    )
    with run_server(tight) as running:
        yield running


def test_public_url_names_the_servers_own_origin(public_web: RunningServer) -> None:
    assert session(public_web.url, PUBLIC, host="evil.example").status_code == 200
    # Its bind address is no longer an origin of its own pages: they are at PUBLIC_URL.
    assert session(public_web.url, public_web.url).status_code == 403


def test_public_url_takes_origins_and_refuses_anything_else() -> None:
    parsed = WebSettings(
        _env_file=None, PUBLIC_URL="https://Chat.Example.com:443/widget/, http://[::1]:8000,http://h:80"
    )
    assert parsed.public_url == ("https://chat.example.com", "http://[::1]:8000", "http://h")
    with pytest.raises(ValidationError, match="is not an http"):
        WebSettings(_env_file=None, PUBLIC_URL="chat.example.com")


# --- 4. rate limits on every session call, API docs, headers ------------------------------------------------------


@pytest.mark.parametrize("call", ["history", "feedback", "forget"])
def test_every_session_call_counts_against_the_session_and_ip_limits(public_web: RunningServer, call: str) -> None:
    def send(token: str, client: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": client}
        if call == "history":
            return history(public_web.url, token, "conv-12345", client)
        if call == "feedback":
            body = {"answer_id": "0" * 32, "rating": "up"}
            return httpx.post(f"{public_web.url}/api/feedback", json=body, headers=headers, timeout=10)
        return httpx.delete(f"{public_web.url}/api/conversations/conv-12345", headers=headers, timeout=10)

    token = token_for(public_web.url, PUBLIC)
    statuses = [send(token, next(_addresses)).status_code for _ in range(4)]  # one session, many addresses
    assert 429 not in statuses[:3] and statuses[3] == 429, statuses
    last = send(token, next(_addresses))
    assert "this chat session" in last.json()["detail"] and int(last.headers["Retry-After"]) >= 1

    client = next(_addresses)  # one address, many sessions
    statuses = [send(token_for(public_web.url, PUBLIC), client).status_code for _ in range(4)]
    assert 429 not in statuses[:3] and statuses[3] == 429, statuses
    assert "your network address" in send(token_for(public_web.url, PUBLIC), client).json()["detail"]


def test_api_docs_are_off_in_production_unless_asked_for(web: RunningServer, public_web: RunningServer) -> None:
    for path in ("/docs", "/openapi.json", "/redoc", "/docs/swagger-ui-bundle.js"):
        assert httpx.get(f"{web.url}{path}", timeout=10).status_code == 404, path
    assert "/api/chat" in httpx.get(f"{public_web.url}/openapi.json", timeout=10).json()["paths"]
    page = httpx.get(f"{public_web.url}/docs", timeout=10)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline';" in policy and "default-src 'none'" in policy
    linked = re.findall(r'(?:src|href)="([^"]*)"', page.text)  # no script, style or icon from another host
    assert linked and all(link.startswith(("/", "data:")) for link in linked), linked
    for name, kind in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")):
        asset = httpx.get(f"{public_web.url}/docs/{name}", timeout=10)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind), name
    assert httpx.get(f"{public_web.url}/docs/index.html", timeout=10).status_code == 404
    assert httpx.get(f"{public_web.url}/docs/..%2Fwidget.js", timeout=10).status_code == 404


def test_api_docs_are_on_in_development(dev_web: RunningServer) -> None:
    assert httpx.get(f"{dev_web.url}/docs", timeout=10).status_code == 200
    assert httpx.get(f"{dev_web.url}/openapi.json", timeout=10).status_code == 200


async def test_swagger_ui_renders_the_api_from_this_server_alone(public_web: RunningServer) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run `bash scripts/setup.sh --dev`", pytrace=False)
    requested: list[str] = []
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        await page.goto(f"{public_web.url}/docs")
        await page.locator(".swagger-ui .info .title").filter(has_text="Switchboard").wait_for(timeout=15000)
        await page.locator("#operations-default-chat_api_chat_post").wait_for(timeout=15000)
        await browser.close()
    assert [url for url in requested if not url.startswith((public_web.url, "data:"))] == []
    assert problems == []


def test_every_response_carries_nosniff_and_a_referrer_policy(web: RunningServer, host_site: tuple[str, Path]) -> None:
    responses = [
        httpx.get(f"{web.url}/", timeout=10),  # the demo page
        httpx.get(f"{web.url}/healthz", timeout=10),
        httpx.get(f"{web.url}/widget.js", timeout=10),
        history(web.url, "forged.token.value", "conv-12345"),  # 401
        httpx.post(f"{web.url}/api/chat", content=b"x" * 20000, headers={"Origin": host_site[0]}, timeout=10),  # 413
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 401, 413]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
