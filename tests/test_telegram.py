"""The Telegram bot end to end: real python-telegram-bot (polling loop, webhook handling, rate limiter) against
a fake Bot API on loopback, the real core over the real Weaviate, the scripted fake LLM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bots.base import RESET_DONE
from bots.settings import TelegramSettings
from bots.telegram import HELP, run
from core.answer.history import SQLiteHistory
from core.answer.log import AnswerLog
from core.config import Settings
from core.types import Turn
from tests.conftest import real_errors, web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.telegram_server import TOKEN, Call, Failure, FakeTelegram
from tests.servers import run_server
from tests.support import REPO
from tests.support.adapters import adapter_settings
from widget.webhooks import Webhooks

QUESTION = "Which port does the Kestrel dashboard listen on?"
ANSWER = ["The dashboard ", "listens on port 8470 [1]."]


@pytest.fixture(scope="module")
def fake_tg() -> Iterator[FakeTelegram]:
    server = FakeTelegram().start()
    yield server
    server.stop()


def bot_settings(settings: Settings, fake_llm: FakeOpenAI, tmp: Path) -> Settings:
    """Chat -500 mapped to the team bot."""
    base = web_settings(settings, fake_llm, "http://127.0.0.1:1", tmp)
    assert base.bots_file is not None
    base.bots_file.write_text(
        base.bots_file.read_text() + '[bots.team]\nkb = "widget_kb"\npersona = "Team Helper"\n'
        'welcome = "Hello team!"\n[bots.team.telegram]\nchats = ["-500"]\n'
    )
    return base


def tg_settings(fake_tg: FakeTelegram, **extra: Any) -> TelegramSettings:
    """The bot's token, against the fake; the docs bot by default."""
    return adapter_settings(TelegramSettings, bot_token=SecretStr(TOKEN), api_url=fake_tg.base_url, bot="docs", **extra)


@pytest.fixture(scope="module")
async def polling(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    fake_tg: FakeTelegram,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Settings]:
    core = bot_settings(settings, fake_llm, tmp_path_factory.mktemp("tg"))
    async with polling_bot(core, fake_tg):
        yield core


@asynccontextmanager
async def polling_bot(core: Settings, fake_tg: FakeTelegram) -> AsyncIterator[None]:
    """`bots.telegram.run`, the function behind `switchboard bot telegram`, polling the fake until the block ends."""
    task = asyncio.create_task(run(core, tg_settings(fake_tg)))
    await asyncio.to_thread(fake_tg.wait_for, lambda: fake_tg.of("setMyCommands"), 120)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait(fake: FakeTelegram, predicate: Any, timeout: float = 20.0) -> None:
    await asyncio.to_thread(fake.wait_for, predicate, timeout)


def final(fake: FakeTelegram, chat_id: int) -> Call:
    """The message that carries the feedback buttons: the end of an answer."""
    with_buttons = [c for c in fake.calls if c.params.get("chat_id") == chat_id and c.params.get("reply_markup")]
    return with_buttons[-1]


def has_final(fake: FakeTelegram, chat_id: int) -> bool:
    return finals(fake, chat_id) > 0


def finals(fake: FakeTelegram, chat_id: int) -> int:
    return sum(1 for c in fake.calls if c.params.get("chat_id") == chat_id and c.params.get("reply_markup"))


def texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [str(c.params.get("text", "")) for c in fake.calls if c.params.get("chat_id") == chat_id]


async def test_private_message_streams_an_html_answer_with_citations(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI
) -> None:
    assert {c["command"] for c in fake_tg.of("setMyCommands")[0].params["commands"]} == {
        "ask",
        "reset",
        "help",
        "start",
    }
    fake_llm.enqueue(Reply(chunks=[*ANSWER[:1], *(["."] * 3), ANSWER[1]], stall_after=1, stall_seconds=1.3))
    fake_tg.push(fake_tg.message(QUESTION, chat_id=101))
    await wait(fake_tg, lambda: has_final(fake_tg, 101))

    calls = [c for c in fake_tg.calls if c.params.get("chat_id") == 101]
    assert calls[0].method == "sendChatAction" and calls[0].params["action"] == "typing"
    assert calls[1].method == "sendMessage" and "Thinking" in calls[1].params["text"]
    assert calls[1].params["reply_parameters"]["message_id"] > 0
    edits = [c for c in calls if c.method == "editMessageText"]
    assert len(edits) >= 2, "a preview edit while the model streams, then the final one"
    last = edits[-1].params
    assert last["parse_mode"] == "HTML" and "port 8470 [1]" in last["text"]
    assert re.search(r"<b>Sources:</b>\n\[1\] \w", last["text"])
    assert str(REPO) not in last["text"], "local sources are named by title, never by server path"
    buttons = last["reply_markup"]["inline_keyboard"][0]
    assert [b["text"] for b in buttons] == ["👍", "👎"] and buttons[0]["callback_data"].startswith("up:")


async def test_feedback_button_is_stored_with_the_answer(polling: Settings, fake_tg: FakeTelegram) -> None:
    data = final(fake_tg, 101).params["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
    fake_tg.push(fake_tg.callback(data, chat_id=101))
    await wait(fake_tg, lambda: fake_tg.of("answerCallbackQuery"))
    assert fake_tg.of("answerCallbackQuery")[-1].params["text"] == "Thanks for the feedback!"
    feedback = await AnswerLog(polling.data_dir / "answers.sqlite3").feedback(data.split(":", 1)[1])
    assert feedback is not None and feedback.rating == "down"
    fake_tg.push(fake_tg.callback("up:no-such-answer", chat_id=101))
    await wait(fake_tg, lambda: len(fake_tg.of("answerCallbackQuery")) == 2)
    assert "no longer available" in fake_tg.of("answerCallbackQuery")[-1].params["text"]


async def test_groups_answer_mentions_and_replies_only(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI
) -> None:
    fake_tg.push(fake_tg.message(QUESTION, chat_id=-200, chat_type="supergroup"))
    fake_llm.enqueue(Reply(chunks=ANSWER), Reply(chunks=["Yes, on every start [1]."]))
    fake_tg.push(fake_tg.message(f"@kestrel_bot {QUESTION}", chat_id=-201, chat_type="supergroup"))
    await wait(fake_tg, lambda: has_final(fake_tg, -201))
    fake_tg.push(fake_tg.message("Is the dashboard port fixed?", chat_id=-202, chat_type="group", reply_to_bot=True))
    await wait(fake_tg, lambda: has_final(fake_tg, -202))
    assert "on every start" in final(fake_tg, -202).params["text"]
    # The mention was stripped from the question the model saw.
    assert QUESTION in fake_llm.chat_requests()[-2]["messages"][-1]["content"]
    assert "@kestrel_bot" not in fake_llm.chat_requests()[-2]["messages"][-1]["content"]
    assert texts(fake_tg, -200) == []


async def test_forum_topics_are_separate_conversations(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER), Reply(chunks=ANSWER))
    for answered, topic in enumerate((5, 6), 1):
        fake_tg.push(fake_tg.message(f"@kestrel_bot {QUESTION}", chat_id=-300, chat_type="supergroup", topic=topic))
        await wait(fake_tg, lambda n=answered: finals(fake_tg, -300) >= n)  # type: ignore[misc]
    assert {c.params["message_thread_id"] for c in fake_tg.of("sendMessage", chat_id=-300)} == {5, 6}
    answers = AnswerLog(polling.data_dir / "answers.sqlite3")
    assert len(await answers.conversation("telegram", "-300:5")) == 1
    assert len(await answers.conversation("telegram", "-300:6")) == 1


async def test_commands(polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI) -> None:
    fake_tg.push(fake_tg.message("/start", chat_id=401))
    fake_tg.push(fake_tg.message("/start", chat_id=-500, chat_type="group"))  # a chat mapped to bot "team"
    fake_tg.push(fake_tg.message("/help", chat_id=402))
    fake_tg.push(fake_tg.message("/ask", chat_id=403))
    await wait(fake_tg, lambda: all(texts(fake_tg, chat) for chat in (401, -500, 402, 403)))
    assert texts(fake_tg, 401) == ["Hi! Ask me about Kestrel."]
    assert texts(fake_tg, -500) == ["Hello team!"]
    assert texts(fake_tg, 402) == [HELP]
    assert texts(fake_tg, 403) == ["Usage: /ask <your question>"]

    fake_llm.enqueue(Reply(chunks=ANSWER))
    fake_tg.push(fake_tg.message(f"/ask {QUESTION}", chat_id=-404, chat_type="supergroup"))
    await wait(fake_tg, lambda: has_final(fake_tg, -404))
    assert "8470" in final(fake_tg, -404).params["text"]

    history = SQLiteHistory(polling.data_dir / "history.sqlite3", 10)
    assert await history.load("telegram", "-404") == [
        Turn(role="user", content=QUESTION),
        Turn(role="assistant", content="".join(ANSWER)),
    ]
    fake_tg.push(fake_tg.message("/reset", chat_id=-404, chat_type="supergroup"))
    await wait(fake_tg, lambda: RESET_DONE in texts(fake_tg, -404))
    assert await history.load("telegram", "-404") == []


async def test_flood_control_is_retried_and_long_answers_are_split(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI
) -> None:
    fake_tg.fail("sendMessage", Failure(429, "Too Many Requests: retry after 1", retry_after=1))
    long = "\n\n".join(f"Step {i}: " + "configure the dashboard port carefully " * 12 + "[1]" for i in range(20))
    fake_llm.enqueue(Reply(chunks=[long[i : i + 700] for i in range(0, len(long), 700)]))
    fake_tg.push(fake_tg.message(QUESTION, chat_id=501))
    await wait(fake_tg, lambda: has_final(fake_tg, 501), timeout=40)
    sends = fake_tg.of("sendMessage", chat_id=501)
    assert sends[1].at - sends[0].at >= 0.9, "the 429 was retried after retry_after"
    assert len(sends) >= 4, "the placeholder (twice: 429 then ok) and at least two continuation parts"
    shown: dict[int, str] = {}
    for call in (c for c in fake_tg.calls if c.params.get("chat_id") == 501 and c.method != "sendChatAction"):
        assert len(call.params["text"]) <= 4096
        if call.method == "editMessageText":
            shown[call.params["message_id"]] = call.params["text"]
    joined = "".join(shown.values()) + "".join(c.params["text"] for c in sends[2:])
    assert all(f"Step {i}:" in joined for i in range(20))


async def test_html_is_escaped_and_code_blocks_kept(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(
        Reply(chunks=["Use `a<b && c` and <script>x</script> & more [1].\n\n", "```py\nif a < b:\n    pass\n```"])
    )
    fake_tg.push(fake_tg.message(QUESTION, chat_id=601))
    await wait(fake_tg, lambda: has_final(fake_tg, 601))
    text = final(fake_tg, 601).params["text"]
    assert "<code>a&lt;b &amp;&amp; c</code>" in text
    assert "&lt;script&gt;x&lt;/script&gt; &amp; more" in text and "<script>" not in text
    assert '<pre><code class="language-py">if a &lt; b:\n    pass</code></pre>' in text


async def test_blocked_users_network_drops_and_unmodified_edits_do_not_stop_the_bot(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI
) -> None:
    fake_tg.fail("sendChatAction", Failure(403, "Forbidden: bot was blocked by the user"))
    fake_tg.fail("sendMessage", Failure(403, "Forbidden: bot was blocked by the user"))
    fake_tg.push(fake_tg.message(QUESTION, chat_id=701))
    await wait(fake_tg, lambda: fake_tg.of("sendMessage", chat_id=701))
    fake_tg.fail("getUpdates", Failure(502, "Bad Gateway"), times=2)
    fake_tg.fail("editMessageText", Failure(400, "Bad Request: message is not modified"))
    fake_llm.enqueue(Reply(chunks=[ANSWER[0], ANSWER[1]], stall_after=1, stall_seconds=1.3))
    fake_tg.push(fake_tg.message(QUESTION, chat_id=702))
    await wait(fake_tg, lambda: has_final(fake_tg, 702), timeout=40)
    assert "8470" in final(fake_tg, 702).params["text"]


async def test_webhook_requires_the_secret_and_answers_each_update_once(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, fake_tg: FakeTelegram, tmp_path: Path
) -> None:
    hook = tg_settings(
        fake_tg,
        mode="webhook",
        webhook_secret=SecretStr("hook-secret"),
        webhook_url="https://bot.example/telegram/webhook",
    )
    with run_server(bot_settings(settings, fake_llm, tmp_path), Webhooks(telegram=hook)) as server:
        registered = fake_tg.of("setWebhook")[-1].params
        assert (
            registered["url"] == "https://bot.example/telegram/webhook" and registered["secret_token"] == "hook-secret"
        )
        update = {"update_id": 90001, **fake_tg.message(QUESTION, chat_id=801)}
        url = f"{server.url}/telegram/webhook"
        async with httpx.AsyncClient() as client:
            missing = await client.post(url, json=update)
            wrong = await client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
            assert (missing.status_code, wrong.status_code) == (403, 403)
            assert "secret" in missing.json()["detail"].lower()
            fake_llm.enqueue(Reply(chunks=ANSWER))
            headers = {"X-Telegram-Bot-Api-Secret-Token": "hook-secret"}
            for _ in range(2):  # Telegram redelivers when it did not see a 200 in time
                assert (await client.post(url, content=json.dumps(update), headers=headers)).status_code == 200
            garbage = await client.post(url, content=b"[1, 2", headers=headers)
            assert garbage.status_code == 400
        await wait(fake_tg, lambda: has_final(fake_tg, 801))
        await asyncio.sleep(1.0)
        assert len([c for c in fake_tg.of("sendMessage", chat_id=801)]) == 1


async def test_webhook_refuses_forged_and_malformed_updates_with_one_log_line_and_no_traceback(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    fake_tg: FakeTelegram,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = Webhooks(telegram=tg_settings(fake_tg, mode="webhook", webhook_secret=SecretStr("hook-secret")))
    with run_server(bot_settings(settings, fake_llm, tmp_path), hook) as server, caplog.at_level(logging.INFO):
        url = f"{server.url}/telegram/webhook"
        async with httpx.AsyncClient() as client:
            forged = await client.post(url, json={}, headers=[(b"X-Telegram-Bot-Api-Secret-Token", "hoök".encode())])
            headers = {"X-Telegram-Bot-Api-Secret-Token": "hook-secret"}
            malformed = [
                await client.post(url, content=body, headers=headers)
                for body in (b"[1]", b"null", b'{"message":"str"}', b'{"update_id": 1, "message": {"chat": 5}}')
            ]
    assert forged.status_code == 403
    assert [r.status_code for r in malformed] == [400] * 4
    assert all(r.json()["detail"].startswith("not a Telegram payload: ") for r in malformed)
    refusals = [r for r in caplog.records if r.name == "bots.webhooks"]
    assert len(refusals) == 5 and all("telegram webhook: refused" in r.getMessage() for r in refusals)
    assert not real_errors(caplog.records)  # no record carries a traceback (exc_info) or is an error
