"""The WhatsApp bot end to end: the real web server with the webhook mounted, a fake Cloud API on loopback
(the Graph API endpoint the bot calls, with rate limits on demand), the real core over the real Weaviate and
the scripted fake LLM. Deliveries are signed as Meta signs them."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bots.base import relay
from bots.render import WHATSAPP
from bots.settings import WhatsAppSettings
from bots.whatsapp.bot import HELP, RESET_DONE, TEXT_ONLY, WholeAnswer
from bots.whatsapp.graph import Graph
from core.answer.history import SQLiteHistory
from core.answer.log import AnswerLog
from core.config import Settings
from core.errors import ConfigError
from tests.conftest import real_errors, web_settings
from tests.fakes import whatsapp_server as wa
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.whatsapp_server import Call, FakeWhatsApp
from tests.servers import RunningServer, run_server
from tests.support.adapters import adapter_settings
from tests.test_relay import FakeChannel, stream
from widget.webhooks import Webhooks

QUESTION = "Which port does the Kestrel dashboard listen on?"
ANSWER = ["The dashboard ", "listens on **port 8470** [1]."]
OTHER_NUMBER = "200000000000001"  # a second business number, mapped to the team bot


@pytest.fixture(scope="module")
def fake_wa() -> Iterator[FakeWhatsApp]:
    server = FakeWhatsApp().start()
    yield server
    server.stop()


def wa_settings(fake: FakeWhatsApp, **extra: Any) -> WhatsAppSettings:
    fields: dict[str, Any] = {
        "access_token": SecretStr(wa.TOKEN),
        "app_secret": SecretStr(wa.APP_SECRET),
        "verify_token": SecretStr(wa.VERIFY_TOKEN),
        "phone_number_id": wa.PHONE_NUMBER_ID,
        "api_url": fake.base_url,
        "bot": "docs",
        **extra,
    }
    return adapter_settings(WhatsAppSettings, **fields)


def bot_settings(settings: Settings, fake_llm: FakeOpenAI, tmp: Path, **extra: object) -> Any:
    base = web_settings(settings, fake_llm, "http://127.0.0.1:1", tmp, **extra)
    assert base.bots_file is not None
    base.bots_file.write_text(
        base.bots_file.read_text() + '[bots.team]\nkb = "widget_kb"\npersona = "Team Helper"\n'
        f'welcome = "Hello team!"\n[bots.team.whatsapp]\nphone_numbers = ["{OTHER_NUMBER}"]\n'
    )
    return base


@pytest.fixture(scope="module")
def server(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    fake_wa: FakeWhatsApp,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    core = bot_settings(settings, fake_llm, tmp_path_factory.mktemp("wa"))
    with run_server(core, Webhooks(whatsapp=wa_settings(fake_wa))) as running:
        yield running


async def deliver(
    server: RunningServer, payload: dict[str, Any] | bytes, client: httpx.AsyncClient | None = None
) -> httpx.Response:
    """POST one delivery signed as Meta signs it (through `client` when given, as Meta keeps its connections)."""
    body, headers = wa.signed(payload)
    if client is not None:
        return await client.post(f"{server.url}/whatsapp/webhook", content=body, headers=headers)
    async with httpx.AsyncClient(timeout=10) as own:
        return await deliver(server, payload, own)


async def wait(fake: FakeWhatsApp, predicate: Any, timeout: float = 20.0) -> None:
    await asyncio.to_thread(fake.wait_for, predicate, timeout)


def answered(fake: FakeWhatsApp, user: str) -> list[Call]:
    """The messages carrying feedback buttons: one per answer."""
    return [c for c in fake.to(user) if c.kind == "interactive"]


# --- the strategy for a platform that cannot edit ---------------------------------------------------------


async def test_nothing_is_edited_typing_is_renewed_and_the_whole_answer_comes_at_once() -> None:
    channel = FakeChannel(dialect=WHATSAPP, edit_interval=0.1)
    done = await relay(stream([f"word{i} " for i in range(8)], pause=0.05), channel, WholeAnswer(channel))
    assert done is not None
    assert channel.typed >= 3, "typing… shown at the start, then renewed while the answer is written"
    assert [c.op for c in channel.calls] == ["post"], "no placeholder, no edits: one message at the end"
    assert channel.calls[0].answer_id == "ans1" and "word7" in channel.calls[0].text
    assert "*Sources:*\n[1] Install › Ports: https://kestrel.example/install" in channel.calls[0].text


# --- the handshake and the signature ------------------------------------------------------------------------


async def test_verification_handshake(server: RunningServer) -> None:
    url = f"{server.url}/whatsapp/webhook"
    async with httpx.AsyncClient() as client:
        good = {"hub.mode": "subscribe", "hub.verify_token": wa.VERIFY_TOKEN, "hub.challenge": "1158201444"}
        ok = await client.get(url, params=good)
        assert (ok.status_code, ok.text) == (200, "1158201444")
        assert ok.headers["content-type"].startswith("text/plain")
        for bad in ({**good, "hub.verify_token": "nope"}, {**good, "hub.mode": "unsubscribe"}, {}):
            refused = await client.get(url, params=bad)
            assert refused.status_code == 403 and "verify_token" in refused.json()["detail"]


async def test_unsigned_and_forged_deliveries_are_refused_before_parsing(
    server: RunningServer, fake_wa: FakeWhatsApp, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{server.url}/whatsapp/webhook"
    payload = json.dumps(wa.delivery(wa.text("15550001001", QUESTION))).encode()
    forged_sig = wa.signed(payload, secret="not-the-app-secret")[1]["X-Hub-Signature-256"]
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient() as client:
            unsigned = await client.post(url, content=payload)
            forged = await client.post(url, content=payload, headers={"X-Hub-Signature-256": forged_sig})
            # Not JSON at all, with a wrong or non-ASCII signature: still 401, so nothing parsed it.
            garbage = await client.post(url, content=b"{not json", headers={"X-Hub-Signature-256": forged_sig})
            odd = await client.post(url, content=b"[", headers=[(b"X-Hub-Signature-256", "sha256=ö".encode())])
    assert [r.status_code for r in (unsigned, forged, garbage, odd)] == [401] * 4
    assert "missing" in unsigned.json()["detail"] and "wrong" in forged.json()["detail"]
    await asyncio.sleep(0.5)
    assert fake_wa.to("15550001001") == []
    assert not real_errors(caplog.records)


async def test_signed_malformed_bodies_are_400_with_a_reason(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = [
        b"{not json",
        b"null",
        b"\xff\xfe",
        json.dumps({"object": "page", "entry": []}).encode(),
        json.dumps({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}).encode(),
        json.dumps(wa.delivery({"from": "1", "type": "text", "text": {"body": "hi"}})).encode(),  # no id
    ]
    with caplog.at_level(logging.INFO):
        replies = [await deliver(server, body) for body in bodies]
    assert [r.status_code for r in replies] == [400] * len(bodies)
    assert all(r.json()["detail"].startswith("not a Whatsapp payload: ") for r in replies)
    assert not real_errors(caplog.records)


# --- answering -------------------------------------------------------------------------------------------


async def test_text_is_answered_in_the_whatsapp_dialect_with_sources_and_buttons(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI
) -> None:
    user = "15550001002"
    fake_llm.enqueue(Reply(chunks=ANSWER))
    question = wa.text(user, QUESTION)
    assert (await deliver(server, wa.delivery(question))).status_code == 200
    await wait(fake_wa, lambda: answered(fake_wa, user))

    receipt = fake_wa.of(question["id"])[0].payload
    assert receipt["status"] == "read" and receipt["typing_indicator"] == {"type": "text"}
    assert fake_wa.calls.index(fake_wa.of(question["id"])[0]) < fake_wa.calls.index(answered(fake_wa, user)[0])
    [final] = fake_wa.to(user)  # one message: the answer, with its buttons
    assert final.phone_number_id == wa.PHONE_NUMBER_ID and final.payload["context"]["message_id"] == question["id"]
    text = final.text
    assert "listens on *port 8470* [1]." in text
    assert "*Sources:*\n[1] " in text and "](" not in text and "<a " not in text
    buttons = final.payload["interactive"]["action"]["buttons"]
    assert [b["reply"]["title"] for b in buttons] == ["👍", "👎"]
    assert buttons[0]["reply"]["id"].startswith("up:") and buttons[1]["reply"]["id"].startswith("down:")


async def test_button_reply_is_stored_as_feedback(server: RunningServer, fake_wa: FakeWhatsApp) -> None:
    user = "15550001002"
    down = answered(fake_wa, user)[-1].payload["interactive"]["action"]["buttons"][1]["reply"]["id"]
    await deliver(server, wa.delivery(wa.button_reply(user, down, "👎")))
    await wait(fake_wa, lambda: any(c.text == "Thanks for the feedback!" for c in fake_wa.to(user)))
    feedback = await AnswerLog(server.settings.data_dir / "answers.sqlite3").feedback(down.split(":", 1)[1])
    assert feedback is not None and feedback.rating == "down"
    await deliver(server, wa.delivery(wa.button_reply(user, "up:no-such-answer")))
    await wait(fake_wa, lambda: any("no longer available" in c.text for c in fake_wa.to(user)))


async def test_long_answers_are_split_between_blocks(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI
) -> None:
    user = "15550001003"
    long = "\n\n".join(f"Step {i}: " + "configure the dashboard port carefully " * 12 + "[1]" for i in range(20))
    fake_llm.enqueue(Reply(chunks=[long[i : i + 700] for i in range(0, len(long), 700)]))
    await deliver(server, wa.delivery(wa.text(user, QUESTION)))
    await wait(fake_wa, lambda: answered(fake_wa, user))
    sent = fake_wa.to(user)
    texts = [c for c in sent if c.kind == "text"]
    assert len(texts) >= 3 and all(len(c.text) <= 4096 for c in texts)
    assert all(c.text.rstrip().endswith("[1]") or "Sources" in c.text for c in texts), "cut between blocks"
    joined = "".join(c.text for c in texts)
    assert all(f"Step {i}:" in joined for i in range(20))
    # The last part is longer than an interactive body may be: the buttons follow it in a message of their own.
    assert sent[-1].kind == "interactive" and sent[-1].text == "Was this answer helpful?"


async def test_redelivery_statuses_and_echoes_are_not_answered(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI
) -> None:
    user = "15550001004"
    fake_llm.enqueue(Reply(chunks=ANSWER))
    delivery = wa.delivery(wa.text(user, QUESTION))
    replies = await asyncio.gather(*(deliver(server, delivery) for _ in range(3)))  # Meta retries until a 200
    assert all(r.status_code == 200 for r in replies)
    statuses = wa.delivery(statuses=[wa.status(user, "sent"), wa.status(user, "read")])
    assert (await deliver(server, statuses)).status_code == 200
    assert (await deliver(server, wa.echo(user, "sent from the phone"))).status_code == 200
    await wait(fake_wa, lambda: answered(fake_wa, user))
    await asyncio.sleep(1.0)
    assert len(fake_wa.to(user)) == 1 and len(fake_llm.chat_requests()) >= 1
    assert len([c for c in fake_wa.calls if c.kind == "status" and c.payload["message_id"] == "wamid.OUT1"]) == 0


async def test_messages_outside_the_24_hour_window_are_logged_not_answered(
    server: RunningServer, fake_wa: FakeWhatsApp, caplog: pytest.LogCaptureFixture
) -> None:
    user = "15550001005"
    stale = wa.text(user, QUESTION, age=25 * 3600)
    with caplog.at_level(logging.WARNING, logger="bots.whatsapp"):
        assert (await deliver(server, wa.delivery(stale))).status_code == 200
        await asyncio.sleep(1.0)
    assert fake_wa.to(user) == [] and fake_wa.of(stale["id"]) == []
    assert any("outside the 24-hour customer-service window" in r.getMessage() for r in caplog.records)


async def test_rate_limits_are_retried_with_backoff(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI
) -> None:
    user = "15550001006"
    fake_llm.enqueue(Reply(chunks=ANSWER))
    fake_wa.fail(wa.PAIR_RATE_LIMIT)
    fake_wa.fail(wa.TOO_MANY)
    await deliver(server, wa.delivery(wa.text(user, QUESTION)))
    await wait(fake_wa, lambda: len(fake_wa.to(user)) == 3, timeout=30)
    first, second, third = fake_wa.to(user)
    assert first.payload == second.payload == third.payload, "the same answer, sent again"
    assert second.at - first.at >= 0.9 and third.at - second.at >= 1.8, "exponential backoff: 1 s, then 2 s"


async def test_other_refusals_are_logged_not_retried_and_the_bot_carries_on(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    user = "15550001011"
    fake_llm.enqueue(Reply(chunks=ANSWER), Reply(chunks=ANSWER))
    fake_wa.fail(wa.OUTSIDE_WINDOW)
    with caplog.at_level(logging.ERROR, logger="bots.whatsapp"):
        await deliver(server, wa.delivery(wa.text(user, QUESTION)))
        await wait(fake_wa, lambda: fake_wa.to(user))
        await asyncio.sleep(1.5)
    assert len(fake_wa.to(user)) == 1, "not a rate limit: no retry"
    assert any("131047" in r.getMessage() or "131047" in str(r.exc_info) for r in caplog.records)
    await deliver(server, wa.delivery(wa.text(user, QUESTION)))
    await wait(fake_wa, lambda: answered(fake_wa, user))


async def test_reset_help_and_other_message_types(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI
) -> None:
    user = "15550001007"
    fake_llm.enqueue(Reply(chunks=ANSWER))
    await deliver(server, wa.delivery(wa.text(user, QUESTION)))
    await wait(fake_wa, lambda: answered(fake_wa, user))
    history = SQLiteHistory(server.settings.data_dir / "history.sqlite3", 10)
    conversation = f"{wa.PHONE_NUMBER_ID}:{user}"
    assert len(await history.load("whatsapp", conversation)) == 2

    await deliver(server, wa.delivery(wa.text(user, "Reset")))
    await wait(fake_wa, lambda: any(c.text == RESET_DONE for c in fake_wa.to(user)))
    assert await history.load("whatsapp", conversation) == []
    await deliver(server, wa.delivery(wa.text(user, "help")))
    await wait(fake_wa, lambda: any(c.text == f"Hi! Ask me about Kestrel.\n\n{HELP}" for c in fake_wa.to(user)))
    image = wa.message(user, "image", {"id": "media-1", "mime_type": "image/jpeg"})  # voice notes: test_voice_notes
    await deliver(server, wa.delivery(image))
    await wait(fake_wa, lambda: any(c.text == TEXT_ONLY for c in fake_wa.to(user)))


async def test_each_business_number_answers_as_its_bot_and_unknown_numbers_are_ignored(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI
) -> None:
    user = "15550001008"
    fake_llm.enqueue(Reply(chunks=ANSWER))
    await deliver(server, wa.delivery(wa.text(user, QUESTION), phone_number_id=OTHER_NUMBER))
    await wait(fake_wa, lambda: answered(fake_wa, user))
    assert answered(fake_wa, user)[0].phone_number_id == OTHER_NUMBER, "the reply comes from the number asked"
    assert "Team Helper" in fake_llm.chat_requests()[-1]["messages"][0]["content"]
    await deliver(server, wa.delivery(wa.text("15550001009", QUESTION), phone_number_id="300000000000009"))
    await asyncio.sleep(1.0)
    assert fake_wa.to("15550001009") == []


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://graph.facebook.com/v23.0/download/1", True),
        ("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1", True),
        ("http://lookaside.fbsbx.com/x", False),  # the CDN over plain HTTP
        ("https://fbsbx.com.evil.example/x", False),
        ("https://evilfbsbx.com/x", False),
        ("https://graph.facebook.com:8443/x", False),
        ("https://evil.example/x", False),
    ],
)
async def test_media_downloads_go_only_to_the_api_host_or_metas_cdn(url: str, trusted: bool) -> None:
    graph = Graph.open("https://graph.facebook.com", "v23.0", "token")
    try:
        assert graph._trusted(httpx.URL(url)) is trusted
    finally:
        await graph.aclose()


def test_missing_settings_are_one_config_error_and_no_token_mounts_nothing(fake_wa: FakeWhatsApp) -> None:
    assert Webhooks(whatsapp=adapter_settings(WhatsAppSettings)).webhooks == []
    with pytest.raises(ConfigError, match="WHATSAPP_APP_SECRET"):
        Webhooks(whatsapp=wa_settings(fake_wa, app_secret=None))
    with pytest.raises(ValueError, match="WHATSAPP_VERIFY_TOKEN still holds the placeholder"):
        wa_settings(fake_wa, verify_token=SecretStr("change-me"))


# --- replicas, shutdown, latency ------------------------------------------------------------------------


async def test_a_redelivery_to_another_replica_is_answered_once(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    fake_wa: FakeWhatsApp,
    redis_url: str,
    tmp_path: Path,
) -> None:
    user = "15550001010"
    fake_llm.enqueue(Reply(chunks=ANSWER), Reply(chunks=ANSWER))
    delivery = wa.delivery(wa.text(user, QUESTION))
    replicas = []
    for name in ("a", "b"):  # shared state in Redis (REDIS_URL): redeliveries are de-duplicated there
        (tmp_path / name).mkdir()
        replicas.append(bot_settings(settings, fake_llm, tmp_path / name, redis_url=SecretStr(redis_url)))
    hooks = [Webhooks(whatsapp=wa_settings(fake_wa)) for _ in replicas]
    with run_server(replicas[0], hooks[0]) as first, run_server(replicas[1], hooks[1]) as second:
        replies = await asyncio.gather(deliver(first, delivery), deliver(second, delivery))
        assert [r.status_code for r in replies] == [200, 200]
        await wait(fake_wa, lambda: answered(fake_wa, user))
        await asyncio.sleep(1.0)
    assert len(fake_wa.to(user)) == 1


@pytest.mark.parametrize("grace", [15.0, 1.0])
async def test_shutdown_lets_the_answer_in_flight_finish_or_says_it_was_cut_off(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    fake_wa: FakeWhatsApp,
    tmp_path: Path,
    grace: float,
) -> None:
    user = f"1555000102{int(grace)}"
    fake_llm.enqueue(Reply(chunks=ANSWER, stall_after=1, stall_seconds=3.0))
    core = bot_settings(settings, fake_llm, tmp_path, shutdown_grace_seconds=grace, llm_timeout=30.0)
    with run_server(core, Webhooks(whatsapp=wa_settings(fake_wa))) as server:
        question = wa.text(user, QUESTION)
        await deliver(server, wa.delivery(question))
        await wait(fake_wa, lambda: fake_wa.of(question["id"]))  # answering: read, typing…
    # The server has stopped: the answer was delivered while it shut down, in full or cut off.
    [final] = fake_wa.to(user)
    if grace > 3:
        assert "*port 8470*" in final.text and final.kind == "interactive"
    else:
        assert final.text.startswith("The dashboard") and "interrupted" in final.text.lower()


async def test_added_latency_of_the_whatsapp_path_against_the_widget(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI
) -> None:
    """The same answer through the widget (SSE until its end) and through WhatsApp (signed delivery until the
    answer reaches the Cloud API): what the WhatsApp path adds (signature, dedup, read receipt, the send)."""
    origin = "http://127.0.0.1:1"
    widget, whatsapp = [], []
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(9):
            # A session per conversation, as each visitor's widget has (and under its rate limit).
            token = await client.post(f"{server.url}/api/session", json={"bot": "docs"}, headers={"Origin": origin})
            headers = {"Authorization": f"Bearer {token.json()['token']}", "Origin": origin}
            fake_llm.enqueue(Reply(chunks=ANSWER))
            start = time.monotonic()
            body = {"message": QUESTION, "conversation_id": f"latency-{i}"}
            async with client.stream("POST", f"{server.url}/api/chat", json=body, headers=headers) as response:
                events = [line async for line in response.aiter_lines() if line.startswith("event: ")]
            assert "event: done" in events
            widget.append(time.monotonic() - start)

            user = f"1555000200{i}"
            fake_llm.enqueue(Reply(chunks=ANSWER))
            start = time.monotonic()
            await deliver(server, wa.delivery(wa.text(user, QUESTION)), client)
            await wait(fake_wa, lambda u=user: answered(fake_wa, u))  # type: ignore[misc]
            whatsapp.append(answered(fake_wa, user)[0].at - start)
    added = statistics.median(whatsapp) - statistics.median(widget)
    print(  # the numbers for docs/benchmarks.md (pytest -s)
        f"\nwidget median {statistics.median(widget) * 1000:.0f} ms, whatsapp median "
        f"{statistics.median(whatsapp) * 1000:.0f} ms, added {added * 1000:.0f} ms"
    )
    assert added < 1.0, f"the WhatsApp path adds {added:.2f} s"  # loose: CPU-bound tests share this machine
