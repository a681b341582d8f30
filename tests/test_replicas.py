"""Two real `switchboard serve` processes behind one Redis, as replicas behind a load balancer: separate data
directories (nothing shared through SQLite) and no SWITCHBOARD_SECRET_KEY (they agree on a secret through
Redis). A widget conversation continues on the other replica, a redelivered Slack event is answered once, and
rate limits count requests to both."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from bots.slack import EVENTS_PATH
from core.config import Settings
from core.store.local import LocalWeaviate
from tests.conftest import web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack
from tests.support.cli import cli_environment, serve_process
from tests.test_slack import ANSWER, QUESTION, SECRET, callback, mention, wait_final

HOST_ORIGIN = "https://docs.example"  # the site embedding the widget (allowed in the bots file)


@dataclass(frozen=True)
class Replicas:
    a: str  # base URLs
    b: str
    slack: FakeSlack  # the Slack both answer in


@pytest.fixture(scope="module")
def replicas(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    tmp = tmp_path_factory.mktemp("replicas")
    bots_file = web_settings(settings, fake_llm, HOST_ORIGIN, tmp).bots_file
    weaviate = LocalWeaviate.from_settings(settings)  # the session's, reached as an external Weaviate
    slack = FakeSlack().start()
    shared = cli_environment(settings) | {
        "WEAVIATE_URL": weaviate.url,
        "WEAVIATE_GRPC_PORT": str(settings.weaviate_local_grpc_port),
        "WEAVIATE_API_KEY": weaviate.api_key,
        "SWITCHBOARD_BOTS_FILE": str(bots_file),
        "SWITCHBOARD_KB": widget_kb,
        "LLM_BASE_URL": fake_llm.base_url,
        "LLM_API_KEY": "sk-test",
        "LLM_MODEL": "fake-chat",
        "REDIS_URL": redis_url,
        "RATE_LIMIT_IP": "3/minute",
        "SLACK_MODE": "http",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "SLACK_BOT": "docs",
        "SLACK_STREAMING": "edit",  # one chat.postMessage per answer, then edits
        "SHUTDOWN_GRACE_SECONDS": "2",
    }
    with ExitStack() as running:
        running.callback(slack.stop)
        a, b = (
            running.enter_context(serve_process(shared | {"SWITCHBOARD_DATA_DIR": str(tmp / name)}, tmp)).url
            for name in ("a", "b")
        )
        yield Replicas(a=a, b=b, slack=slack)


def widget(url: str, path: str, client_ip: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    """A widget request from the host site, as the load balancer forwards it (uvicorn trusts X-Forwarded-For
    from loopback), so each test is its own client for the rate limits."""
    headers = {"Origin": HOST_ORIGIN, "X-Forwarded-For": client_ip}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)


def signed_event(url: str, body: dict[str, Any], retry: int | None = None) -> int:
    """An Events API delivery, signed as Slack signs it; `retry` marks a redelivery."""
    raw, timestamp = json.dumps(body).encode(), str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=raw)
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp}
    headers |= {"X-Slack-Signature": str(signature)} | ({"X-Slack-Retry-Num": str(retry)} if retry else {})
    return httpx.post(url + EVENTS_PATH, content=raw, headers=headers, timeout=10).status_code


def test_both_replicas_report_redis_ready(replicas: Replicas) -> None:
    for url in (replicas.a, replicas.b):
        ready = httpx.get(f"{url}/readyz", timeout=15)
        assert ready.status_code == 200 and ready.json()["redis"] == "ok", ready.text


def test_a_widget_conversation_continues_on_the_other_replica(replicas: Replicas, fake_llm: FakeOpenAI) -> None:
    a, b = replicas.a, replicas.b
    minted = widget(a, "/api/session", "198.51.100.1", {"bot": "docs"})
    assert minted.status_code == 200, minted.text
    token, conversation = minted.json()["token"], uuid.uuid4().hex
    fake_llm.enqueue(Reply(chunks=["Port 8470, replica A says [1]."]))
    first = widget(a, "/api/chat", "198.51.100.1", {"message": QUESTION, "conversation_id": conversation}, token)
    assert first.status_code == 200 and "event: done" in first.text

    # B verifies A's token (the secret both took from Redis) and answers with A's turn in the prompt.
    fake_llm.enqueue(Reply(chunks=[QUESTION]), Reply(chunks=["Set `port` in `kestrel.toml` [1]."]))
    follow_up = {"message": "And where do I change it?", "conversation_id": conversation}
    second = widget(b, "/api/chat", "198.51.100.1", follow_up, token)
    assert second.status_code == 200 and "kestrel.toml" in second.text, second.text
    prompt = [m["content"] for m in fake_llm.chat_requests()[-1]["messages"]]
    assert any("replica A says" in m for m in prompt), prompt


def test_a_redelivered_slack_event_sent_to_both_replicas_is_answered_once(
    replicas: Replicas, fake_llm: FakeOpenAI
) -> None:
    a, b, slack = replicas.a, replicas.b, replicas.slack
    fake_llm.enqueue(Reply(chunks=ANSWER, stall_before=1.0))
    asked = len(fake_llm.chat_requests())
    body = callback(mention(QUESTION, channel="C0REPLICAS"))
    thread = body["event"]["ts"]
    assert signed_event(a, body) == 200
    assert signed_event(b, body, retry=1) == 200, "Slack retried, and the load balancer picked the other replica"
    wait_final(slack, "C0REPLICAS", thread)
    assert signed_event(b, body, retry=2) == 200
    time.sleep(1.5)
    assert len(slack.of("chat.postMessage", channel="C0REPLICAS", thread_ts=thread)) == 1
    assert len(fake_llm.chat_requests()) == asked + 1


def test_rate_limits_count_requests_to_both_replicas(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    statuses = [widget(url, "/api/session", "198.51.100.2", {"bot": "docs"}) for url in (a, b, a, b)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert 1 <= int(statuses[-1].headers["Retry-After"]) <= 60
