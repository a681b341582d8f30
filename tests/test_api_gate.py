"""What /v1 and /mcp share: the API-key gate (auth and rate limits) and CORS for browser clients, with the real
openai SDK and raw HTTP against the real server."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import openai
import pytest

from core.config import Settings
from tests.conftest import web_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.servers import RunningServer, run_server
from widget.apikeys import ApiKeys

PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


def new_key(web: RunningServer) -> str:
    return ApiKeys(web.settings.data_dir / "api-keys.sqlite3").create(name="gate-test", bots=())[0]


def preflight(web: RunningServer, path: str, headers: list[str]) -> set[str]:
    """The request headers a browser may send to `path` cross-origin, per the server's preflight answer."""
    response = httpx.options(
        f"{web.url}{path}",
        headers={
            "Origin": "https://chat.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": ", ".join(headers),
        },
    )
    assert response.status_code == 200, response.text
    return {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}


def test_browser_preflights_allow_the_sdk_and_mcp_headers(web: RunningServer) -> None:
    raw = openai.OpenAI(base_url=f"{web.url}/v1", api_key=new_key(web), max_retries=0).models.with_raw_response.list()
    stainless = [name for name in raw.http_request.headers if name.startswith("x-stainless-")]
    assert len(stainless) >= 6  # what the SDK really sends (the JS SDK sends the same family)
    api_headers = ["authorization", "content-type", *stainless, "x-switchboard-conversation"]
    assert set(api_headers) <= preflight(web, "/v1/chat/completions", api_headers)
    mcp_headers = ["authorization", "content-type", "mcp-protocol-version", "mcp-session-id", "last-event-id"]
    assert set(mcp_headers) <= preflight(web, "/mcp", mcp_headers)

    answered = httpx.post(
        f"{web.url}/mcp",
        json=PING,
        headers={"Origin": "https://chat.example.org", "Authorization": f"Bearer {new_key(web)}", **MCP_ACCEPT},
    )
    assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == "*"
    exposed = {h.strip().lower() for h in answered.headers["access-control-expose-headers"].split(",")}
    assert {"mcp-session-id", "retry-after"} <= exposed


def test_keys_count_per_key_and_failed_keys_per_address(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path: Path
) -> None:
    """RATE_LIMIT_IP=3/minute: a valid key goes past it (its own limit governs, on /v1 and /mcp alike), with the
    scheme in any case; invalid keys from one address get 401 three times, then 429."""
    tight = web_settings(settings, fake_llm, host_site[0], tmp_path, rate_limit_ip="3/minute")
    with run_server(tight) as web:
        key = new_key(web)
        api = openai.OpenAI(base_url=f"{web.url}/v1", api_key=key, max_retries=0)
        for _ in range(4):
            assert [m.id for m in api.models.list()]
        for scheme in ("bearer", "BEARER"):
            auth = {"Authorization": f"{scheme} {key}"}
            assert httpx.get(f"{web.url}/v1/models", headers=auth).status_code == 200
            assert httpx.post(f"{web.url}/mcp", json=PING, headers={**auth, **MCP_ACCEPT}).status_code == 200

        wrong = {"Authorization": "Bearer sb-0000-wrong"}
        v1 = [httpx.get(f"{web.url}/v1/models", headers=wrong) for _ in range(3)]
        assert [r.status_code for r in v1] == [401, 401, 401]
        limited = httpx.get(f"{web.url}/v1/models", headers=wrong)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        mcp = httpx.post(f"{web.url}/mcp", json=PING, headers={**wrong, **MCP_ACCEPT})
        assert mcp.status_code == 429 and mcp.json()["error"] == "rate_limited"
        assert "invalid API keys" in mcp.json()["error_description"]

        assert [m.id for m in api.models.list()]  # the valid key is not locked out by the wrong one


async def test_a_wrong_key_costs_no_write(tmp_path: Path) -> None:
    """Guessing keys must not take SQLite's write lock: with another writer holding it, a wrong key is still
    answered at once (a write would wait for the lock)."""
    path = tmp_path / "api-keys.sqlite3"
    keys = ApiKeys(path)
    plain, _ = keys.create(name="t", bots=())
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        assert await asyncio.wait_for(keys.verify("sb-0000-wrong"), timeout=5) is None
        writer.execute("ROLLBACK")
    verified = await keys.verify(plain)
    assert verified is not None and verified.last_used_at is not None
    assert keys.list()[0].last_used_at == pytest.approx(verified.last_used_at)


def test_mcp_bodies_get_the_api_limit(web: RunningServer) -> None:
    """/mcp, like /v1, takes bodies up to API_MAX_BODY_BYTES rather than the widget's MAX_BODY_BYTES."""
    headers = {"Authorization": f"Bearer {new_key(web)}", **MCP_ACCEPT}
    assert web.settings.max_body_bytes < 50_000 < web.settings.api_max_body_bytes
    padded = {**PING, "params": {"_meta": {"padding": "x" * 50_000}}}
    answered = httpx.post(f"{web.url}/mcp", json=padded, headers=headers)
    assert answered.status_code == 200 and answered.json()["id"] == 1
    oversized = {**PING, "params": {"_meta": {"padding": "x" * web.settings.api_max_body_bytes}}}
    assert httpx.post(f"{web.url}/mcp", json=oversized, headers=headers).status_code == 413
