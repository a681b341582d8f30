"""GET /admin/stats on the real server and `switchboard report` on the same answer log: the same numbers, and
every bad period or bot refused with the reason. GET /metrics: off without its token, refused without it."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import Counter
from pydantic import SecretStr

from core.answer.log import AnswerLog
from core.config import Settings
from core.errors import IngestError
from core.metrics import counted
from core.store.local import LocalWeaviate
from tests.conftest import web_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.servers import RunningServer, run_server
from tests.support.answer_log import Row, insert
from tests.support.cli import cli_environment
from tests.test_cli import one_line_error, run
from widget.app import create_app

KEY = "admin-key-for-stats-0123456789"
METRICS_TOKEN = "metrics-token-for-tests-0123456789"
DAY = 86400.0


@pytest.fixture(scope="module")
def server(
    settings: Settings, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("stats")
    web = web_settings(
        settings, fake_llm, host_site[0], tmp, admin_api_key=SecretStr(KEY), metrics_token=SecretStr(METRICS_TOKEN)
    )
    # An answer log of its own (other modules' answers would change the counts): its own data directory, with
    # the session's Weaviate as an external server (its key is kept in the session's data directory).
    weaviate = LocalWeaviate.from_settings(settings)
    external = {
        "data_dir": tmp / "data",
        "weaviate_url": weaviate.url,
        "weaviate_grpc_port": (settings.weaviate_local_grpc_port,),
        "weaviate_api_key": SecretStr(weaviate.api_key),
        "ingest_allowed_hosts": ("127.0.0.1",),  # the console's tests add the host site's pages by URL
    }
    web = web.model_copy(update=external)
    now = time.time()
    log = AnswerLog(web.data_dir / "answers.sqlite3")
    closed = [
        Row(question="How do I install it?", created_at=now - 3600, first_token_ms=100, total_ms=900, rating="up"),
        Row(question="How do I install it?", created_at=now - DAY - 60, channel="slack", first_token_ms=300),
        Row(question="What does the enterprise plan cost?", created_at=now - 60, outcome="dont_know"),
        Row(question="How much is the enterprise price?", created_at=now - 120, rating="down"),
        Row(question="Long ago", created_at=now - 30 * DAY),
    ]
    insert(
        log,
        [dataclasses.replace(r, bot="closed") for r in closed] + [Row(question="Other", created_at=now, bot="docs")],
    )
    with run_server(web) as s:
        yield s


def get(server: RunningServer, query: str, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.url}/admin/stats{query}", headers=headers, timeout=60)


def without_period(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k not in ("since", "until")}


def test_stats_of_a_period_and_bot(server: RunningServer) -> None:
    response = get(server, "?since=7d&bot=closed")
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["bot"] == "closed" and stats["questions"] == 4
    assert sorted((d["channel"], d["questions"]) for d in stats["per_day"]) in (
        [("slack", 1), ("widget", 3)],  # both days of widget answers are today
        [("slack", 1), ("widget", 1), ("widget", 2)],  # or the hour before crossed midnight (UTC)
    )
    assert (stats["dont_know_rate"], stats["fallback_rate"]) == (0.25, 0.0)
    assert (stats["thumbs_up"], stats["thumbs_down"], stats["up_ratio"]) == (1, 1, 0.5)
    assert stats["first_token_ms"]["p50"] == 100.0 and stats["total_ms"]["p95"] > 900
    assert stats["top_sources"] == [{"source": "docs/install.md", "title": "install.md", "answers": 3}]
    # The unanswered and the 👎 enterprise questions are one gap; the well-answered install question is none.
    assert [(g["questions"], sorted(g["examples"])) for g in stats["gaps"]] == [
        (2, ["How much is the enterprise price?", "What does the enterprise plan cost?"])
    ]
    assert get(server, "?since=60d").json()["questions"] == 6  # every bot, the old answer too
    assert get(server, "").json()["questions"] == 5  # default: the last 7 days


@pytest.mark.parametrize(
    ("query", "key", "status", "reason"),
    [
        ("?since=7y", KEY, 422, "invalid period '7y'"),
        ("?since=0d", KEY, 422, "invalid period"),
        ("?since=" + "9" * 20, KEY, 422, "since"),
        ("?bot=nobody", KEY, 404, "unknown bot 'nobody'"),
        ("", None, 401, "missing admin key"),
        ("", "wrong-key", 403, "wrong admin key"),
    ],
)
def test_bad_requests_say_why(server: RunningServer, query: str, key: str | None, status: int, reason: str) -> None:
    response = get(server, query, key)
    assert response.status_code == status and reason in response.json()["detail"], response.text


def test_report_prints_the_same_numbers(server: RunningServer, settings: Settings, tmp_path: Path) -> None:
    env = cli_environment(settings) | {
        "SWITCHBOARD_DATA_DIR": str(server.settings.data_dir),
        "SWITCHBOARD_BOTS_FILE": str(server.settings.bots_file),
    }
    result = run(env, "report", "--since", "7d", "--bot", "closed", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert without_period(json.loads(result.stdout)) == without_period(get(server, "?since=7d&bot=closed").json())

    table = run(env, "report", "--since", "7d", "--bot", "closed", "--no-gaps", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "25.0%" in table.stdout and "docs/install.md" in table.stdout and "50.0%" in table.stdout
    assert "enterprise" not in table.stdout  # --no-gaps: no clustering

    one_line_error(run(env, "report", "--since", "7y", cwd=tmp_path), "invalid period '7y'")
    one_line_error(run(env, "report", "--bot", "nobody", cwd=tmp_path), "unknown bot 'nobody'")


def test_metrics_need_their_token(server: RunningServer) -> None:
    url = f"{server.url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong-token"}).status_code == 403
    assert get(server, "?since=24h").status_code == 200
    response = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    # HTTP requests by route template (the instrumentator), never by the path a client made up.
    assert 'http_requests_total{handler="/admin/stats",method="GET",status="2xx"}' in response.text
    assert httpx.get(f"{server.url}/made-up-{uuid.uuid4().hex}").status_code == 404
    again = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert [line for line in again.splitlines() if "made-up" in line] == []
    assert 'handler="none"' in again
    for name in ("switchboard_answers_total", "switchboard_retrieval_seconds_bucket", "switchboard_ingests_total"):
        assert f"# TYPE {name.removesuffix('_total').removesuffix('_bucket')}" in response.text


def test_metrics_are_off_without_a_token(settings: Settings, fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    app = create_app(web_settings(settings, fake_llm, "https://example.com", tmp_path))
    assert TestClient(app).get("/metrics").status_code == 404  # the route does not exist (no lifespan needed)


async def test_ingestion_runs_are_counted_by_result() -> None:
    runs = Counter("test_runs", "Runs of a test function.", ["result"], registry=None)

    @counted(runs)
    async def work(fail: bool) -> str:
        if fail:
            raise IngestError("unreadable")
        return "done"

    assert await work(False) == "done"
    with pytest.raises(IngestError):
        await work(True)
    assert runs.labels("ok")._value.get() == 1 and runs.labels("failed")._value.get() == 1
