"""The MCP server with the official SDK's own client, over streamable HTTP (the real server, behind API keys)
and over stdio (the real `switchboard mcp` process), against the real Weaviate and the scripted fake LLM."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent, TextResourceContents

from core.config import Settings
from core.embed import Embedder
from core.ingest.pipeline import ingest
from core.store.client import open_store
from tests.conftest import WIDGET_KB, web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer, run_server
from tests.support import REPO
from tests.support.cli import cli_environment
from tests.test_cli import one_line_error, run
from widget.apikeys import ApiKeys

QUESTION = "Which port does the Kestrel dashboard listen on?"
PRIVATE_KB = "mcp_private"
NEVER_INGESTED = "mcp_never_ingested"


@pytest.fixture(scope="module")
async def private_kb(settings: Settings, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> str:
    docs = tmp_path_factory.mktemp("private-docs")
    (docs / "vault.md").write_text("# Vault\n\nThe vault door code is rotated every Tuesday by the night shift.\n")
    async with open_store(settings) as store:
        await ingest(store, embedder, [str(docs)], kb=PRIVATE_KB, settings=settings)
    return PRIVATE_KB


@pytest.fixture(scope="module")
def mcp_web(
    settings: Settings,
    widget_kb: str,
    private_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """Bots `default` and `docs` over widget_kb, `private` over another KB, `blank` over a KB never ingested; its
    own per-address limit (every test client is 127.0.0.1) and a per-key limit small enough to reach."""
    tmp = tmp_path_factory.mktemp("mcp-web")
    bots = tmp / "mcp-bots.toml"
    bots.write_text(
        f'[bots.docs]\nkb = "{WIDGET_KB}"\npersona = "Kestrel Helper"\n'
        f'[bots.private]\nkb = "{private_kb}"\npersona = "Vault Keeper"\n'
        f'[bots.blank]\nkb = "{NEVER_INGESTED}"\n'
    )
    web = web_settings(
        settings,
        fake_llm,
        host_site[0],
        tmp,
        bots_file=bots,
        rate_limit_ip="1000/minute",
        rate_limit_api_key="20/minute",
    )
    with run_server(web) as running:
        yield running


def new_key(web: RunningServer, *bots: str) -> tuple[str, str]:
    """A plain key and its id."""
    plain, key = ApiKeys(web.settings.data_dir / "api-keys.sqlite3").create(name="mcp-test", bots=bots)
    return plain, key.id


@asynccontextmanager
async def http_client(web: RunningServer, key: str, **options: Any) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
        Client(streamable_http_client(f"{web.url}/mcp", http_client=http), **options) as client,
    ):
        yield client


def text_of(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


async def kbs_resource(client: Client) -> list[dict[str, Any]]:
    contents = (await client.read_resource("switchboard://kbs")).contents
    assert len(contents) == 1 and isinstance(contents[0], TextResourceContents)
    assert contents[0].mime_type == "application/json"
    rows: list[dict[str, Any]] = json.loads(contents[0].text)["knowledge_bases"]
    return rows


async def check_search_and_ask(client: Client, fake_llm: FakeOpenAI, kb: str | None) -> None:
    """The same observable behaviour whatever the transport: passages, then a cited answer."""
    where = {} if kb is None else {"kb": kb}
    found = await client.call_tool("search_knowledge", {"query": QUESTION, "k": 5, **where})
    assert not found.is_error, text_of(found)
    assert found.structured_content is not None
    assert found.structured_content["kb"] == WIDGET_KB and found.structured_content["query"] == QUESTION
    passages = found.structured_content["passages"]
    assert len(passages) == 5
    assert set(passages[0]) == {"title", "section", "source", "score", "text"}
    port = next(p for p in passages if p["source"].endswith("configuration.md"))
    assert "7878" in port["text"] and port["title"]  # guides/configuration.md: `port` default 7878
    assert json.loads(text_of(found)) == found.structured_content

    fake_llm.enqueue(Reply(chunks=["The dashboard listens on ", "port 7878 [1]."]))
    answered = await client.call_tool("ask", {"question": QUESTION, **where})
    assert not answered.is_error, text_of(answered)
    answer = answered.structured_content
    assert answer is not None
    assert answer["answer"] == "The dashboard listens on port 7878 [1]." and answer["kb"] == WIDGET_KB
    assert answer["cited"] is True and answer["fallback"] is False
    assert [s["n"] for s in answer["sources"]] == [1]
    assert set(answer["sources"][0]) == {"n", "title", "source", "section", "snippet"}
    first = answer["sources"][0]
    assert text_of(answered).startswith("The dashboard listens on port 7878 [1].\n\nSources:\n[1] ")
    assert first["source"] in text_of(answered)
    sent = fake_llm.chat_requests()[-1]["messages"]
    assert QUESTION in sent[-1]["content"] and len(sent) == 2  # stateless: system + this question only


async def check_refusals(client: Client) -> None:
    cases = [
        ("search_knowledge", {"query": QUESTION, "kb": "nope"}, "unknown knowledge base 'nope'"),
        ("search_knowledge", {"query": "   "}, "the query is empty"),
        ("ask", {"question": ""}, "the question is empty"),
        ("ask", {"question": QUESTION, "kb": "nope"}, "unknown knowledge base 'nope'"),
        ("search_knowledge", {"query": "x" * 2001}, "longer than 2000 characters"),
    ]
    for tool, arguments, message in cases:
        result = await client.call_tool(tool, arguments)
        assert result.is_error and message in text_of(result), (tool, arguments, text_of(result))
    out_of_range = await client.call_tool("search_knowledge", {"query": QUESTION, "k": 0})
    assert out_of_range.is_error and "k" in text_of(out_of_range)


async def test_http_tools_resource_answers_and_errors(mcp_web: RunningServer, fake_llm: FakeOpenAI) -> None:
    async with http_client(mcp_web, new_key(mcp_web)[0]) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"search_knowledge", "ask"}
        assert tools["search_knowledge"].input_schema["required"] == ["query"]
        assert tools["ask"].output_schema is not None and "sources" in tools["ask"].output_schema["properties"]
        assert [r.uri for r in (await client.list_resources()).resources] == ["switchboard://kbs"]

        rows = await kbs_resource(client)
        expected = [(WIDGET_KB, "default"), (PRIVATE_KB, "private"), (NEVER_INGESTED, "blank")]
        assert [(r["name"], r["bot"]) for r in rows] == expected
        assert rows[0]["documents"] >= 13 and rows[0]["chunks"] > rows[0]["documents"]
        assert rows[1]["documents"] == 1 and rows[1]["chunks"] == 1
        assert rows[2]["documents"] == 0 and rows[2]["chunks"] == 0

        await check_search_and_ask(client, fake_llm, kb=None)
        await check_refusals(client)


async def test_http_answers_as_the_bot_of_the_kb(mcp_web: RunningServer, fake_llm: FakeOpenAI) -> None:
    async with http_client(mcp_web, new_key(mcp_web)[0]) as client:
        fake_llm.enqueue(Reply(chunks=["Every Tuesday [1]."]))
        answered = await client.call_tool("ask", {"question": "When is the vault door code rotated?", "kb": PRIVATE_KB})
    assert answered.structured_content is not None, text_of(answered)
    assert answered.structured_content["bot"] == "private"
    assert answered.structured_content["sources"][0]["title"] == "Vault"
    assert "Vault Keeper" in fake_llm.chat_requests()[-1]["messages"][0]["content"]  # that bot's persona


async def test_a_key_scoped_to_bots_reaches_only_their_kbs(mcp_web: RunningServer, fake_llm: FakeOpenAI) -> None:
    async with http_client(mcp_web, new_key(mcp_web, "docs")[0]) as client:
        assert [(r["name"], r["bot"]) for r in await kbs_resource(client)] == [(WIDGET_KB, "docs")]
        refused = await client.call_tool("search_knowledge", {"query": "vault door code", "kb": PRIVATE_KB})
        assert refused.is_error
        assert text_of(refused).endswith(f"unknown knowledge base {PRIVATE_KB!r}; available: {WIDGET_KB}")
        fake_llm.enqueue(Reply(chunks=["Port 7878 [1]."]))
        answered = await client.call_tool("ask", {"question": QUESTION})
        assert answered.structured_content is not None and answered.structured_content["bot"] == "docs"
        assert "Kestrel Helper" in fake_llm.chat_requests()[-1]["messages"][0]["content"]

    async with http_client(mcp_web, new_key(mcp_web, "private")[0]) as client:  # its bot's KB is the default
        found = await client.call_tool("search_knowledge", {"query": "vault door code"})
        assert found.structured_content is not None, text_of(found)
        assert found.structured_content["kb"] == PRIVATE_KB
        assert "Tuesday" in found.structured_content["passages"][0]["text"]
        refused = await client.call_tool("search_knowledge", {"query": QUESTION, "kb": WIDGET_KB})
        assert refused.is_error and "unknown knowledge base" in text_of(refused)


async def test_legacy_handshake_clients_work(mcp_web: RunningServer, fake_llm: FakeOpenAI) -> None:
    """Clients of the 2025 protocol (initialize handshake) are served by the same stateless endpoint."""
    async with http_client(mcp_web, new_key(mcp_web)[0], mode="legacy") as client:
        assert client.server_info is not None and client.server_info.name == "switchboard"
        await check_search_and_ask(client, fake_llm, kb=WIDGET_KB)


async def test_http_refuses_missing_invalid_and_revoked_keys(mcp_web: RunningServer) -> None:
    url = f"{mcp_web.url}/mcp"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    for headers, reason in [
        ({}, "missing API key"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "missing API key"),
        ({"Authorization": "Bearer sb-nope-0000"}, "invalid or revoked API key"),
        ({"Authorization": "Bearer not-a-key"}, "invalid or revoked API key"),
    ]:
        refused = httpx.post(url, json=ping, headers={**accept, **headers})
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_token" and reason in refused.json()["error_description"]
        assert refused.headers["www-authenticate"].startswith("Bearer")

    plain, key_id = new_key(mcp_web)
    async with http_client(mcp_web, plain) as client:
        assert len((await client.list_tools()).tools) == 2
        assert ApiKeys(mcp_web.settings.data_dir / "api-keys.sqlite3").revoke(key_id)
        with pytest.raises(Exception):  # noqa: B017 (the SDK surfaces the HTTP 401 as its own error)
            await client.call_tool("search_knowledge", {"query": QUESTION})
    revoked = httpx.post(url, json=ping, headers={**accept, "Authorization": f"Bearer {plain}"})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error_description"]


async def test_clean_descriptions_readable_argument_errors_and_missing_kbs(mcp_web: RunningServer) -> None:
    async with http_client(mcp_web, new_key(mcp_web)[0]) as client:
        for listed in (await client.list_tools()).tools:
            assert listed.description and listed.description == inspect.cleandoc(listed.description), listed.name
            assert "\n " not in listed.description  # no source indentation
        cases: list[tuple[str, dict[str, Any], str]] = [
            (
                "search_knowledge",
                {"query": QUESTION, "k": 0},
                "invalid arguments: k: Input should be greater than or equal to 1",
            ),
            ("ask", {"question": 42}, "invalid arguments: question: Input should be a valid string"),
            ("ask", {}, "invalid arguments: question: Field required"),
        ]
        for tool, arguments, message in cases:
            result = await client.call_tool(tool, arguments)
            assert result.is_error and text_of(result) == message, (tool, arguments, text_of(result))
        for tool, arguments in [
            ("search_knowledge", {"query": QUESTION, "kb": NEVER_INGESTED}),
            ("ask", {"question": QUESTION, "kb": NEVER_INGESTED}),  # not "I couldn't find anything"
        ]:
            result = await client.call_tool(tool, arguments)
            assert result.is_error and f"knowledge base {NEVER_INGESTED!r} does not exist" in text_of(result)


def test_http_get_answers_405_instead_of_holding_an_empty_stream(mcp_web: RunningServer) -> None:
    """Stateless: there is no server-initiated stream (the legacy transport held an empty one open forever)."""
    headers = {"Authorization": f"Bearer {new_key(mcp_web)[0]}", "Accept": "text/event-stream"}
    for method in ("GET", "DELETE"):
        response = httpx.request(method, f"{mcp_web.url}/mcp", headers=headers, timeout=10)
        assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_http_rate_limit_per_key(mcp_web: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {new_key(mcp_web)[0]}", "Accept": "application/json, text/event-stream"}
    statuses = [
        httpx.post(f"{mcp_web.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
        for _ in range(21)
    ]
    assert statuses[0].status_code == 200 and statuses[-1].status_code == 429
    assert int(statuses[-1].headers["Retry-After"]) >= 1 and statuses[-1].json()["error"] == "rate_limited"


async def test_stdio_server(settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    """`switchboard mcp --kb widget_kb` with no bots file: the default bot, over the KB given (SWITCHBOARD_KB
    names a KB that does not exist, so only --kb makes the calls without `kb` work)."""
    env = cli_environment(
        settings,
        SWITCHBOARD_KB="not_ingested",
        LLM_BASE_URL=fake_llm.base_url,
        LLM_API_KEY="sk-test",
        LLM_MODEL="fake-chat",
    )
    server = StdioServerParameters(
        command=str(REPO / ".venv" / "bin" / "switchboard"), args=["mcp", "--kb", widget_kb], env=env, cwd=tmp_path
    )
    async with Client(server, read_timeout_seconds=120) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"search_knowledge", "ask"}
        rows = await kbs_resource(client)
        assert [(r["name"], r["bot"]) for r in rows] == [(WIDGET_KB, "default")] and rows[0]["documents"] >= 13
        await check_search_and_ask(client, fake_llm, kb=None)
        await check_refusals(client)


def test_stdio_bad_kb_is_a_one_line_error(settings: Settings, tmp_path: Path) -> None:
    one_line_error(run(cli_environment(settings), "mcp", "--kb", "Bad-Name", cwd=tmp_path), "invalid knowledge base")
