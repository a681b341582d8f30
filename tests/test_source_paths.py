"""Sources shown outside the server never carry its absolute paths: the widget, the OpenAI-compatible API and
MCP show a file by its path within what was ingested (chat bots show titles), URLs as they are."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from core.types import shown_source
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer
from tests.support import REPO
from tests.test_mcp import http_client
from tests.test_mcp import new_key as new_mcp_key
from tests.test_openai_api import client, new_key
from tests.test_server_api import chat, sse_events, token_for

QUESTION = "Which port does the Kestrel dashboard listen on?"


@pytest.mark.parametrize(
    ("source", "origin", "shown"),
    [
        ("/srv/app/examples/docs/guides/configuration.md", "/srv/app/examples/docs", "docs/guides/configuration.md"),
        ("/srv/app/notes.md", "/srv/app/notes.md", "notes.md"),  # a file named on its own
        (
            "/var/lib/switchboard/uploads/kb/handbook.pdf",
            "/var/lib/switchboard/uploads/kb/handbook.pdf",
            "handbook.pdf",
        ),
        ("/elsewhere/a.md", "/srv/app/docs", "a.md"),
        ("https://example.org/docs/page.html", "https://example.org/sitemap.xml", "https://example.org/docs/page.html"),
    ],
)
def test_shown_source(source: str, origin: str, shown: str) -> None:
    assert shown_source(source, origin) == shown


def assert_no_server_path(text: str, web: RunningServer) -> None:
    for private in (str(REPO), str(web.settings.data_dir), str(Path(web.settings.data_dir).parent)):
        assert private not in text


def test_widget_sources_show_no_server_path(
    web: RunningServer, host_site: tuple[str, Path], fake_llm: FakeOpenAI
) -> None:
    origin = host_site[0]
    fake_llm.enqueue(Reply(chunks=["Port 7878 [1]."]))
    response = chat(web, token_for(web, origin), origin, QUESTION, f"paths-{uuid.uuid4().hex}")
    events = dict(sse_events(response))
    shown = [s["source"] for s in events["sources"]["sources"]] + [s["source"] for s in events["done"]["citations"]]
    assert "docs/guides/configuration.md" in shown
    assert_no_server_path(response.text, web)


def test_api_sources_show_no_server_path(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(chunks=["Port 7878 [1]."]))
    raw = client(web, new_key(web)).chat.completions.with_raw_response.create(
        model="docs", messages=[{"role": "user", "content": QUESTION}]
    )
    body = raw.http_response.json()
    assert any(s["source"].startswith("docs/") for s in body["switchboard"]["sources"])
    assert_no_server_path(json.dumps(body), web)


async def test_mcp_results_show_no_server_path(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    async with http_client(web, new_mcp_key(web)[0]) as mcp:
        found = await mcp.call_tool("search_knowledge", {"query": QUESTION, "k": 5})
        fake_llm.enqueue(Reply(chunks=["Port 7878 [1]."]))
        answered = await mcp.call_tool("ask", {"question": QUESTION})
    assert found.structured_content is not None and answered.structured_content is not None
    assert "docs/guides/configuration.md" in [p["source"] for p in found.structured_content["passages"]]
    for result in (found, answered):
        assert_no_server_path(json.dumps(result.structured_content) + json.dumps(result.model_dump()), web)
