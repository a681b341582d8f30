"""SIGTERM mid-answer, for real: the `switchboard` console script in a subprocess (the web server, the Telegram
bot polling the fake Bot API, the stdio MCP server), or a bot's run() in this process (Discord, Slack), against
the session's Weaviate and the scripted fake LLM. In-flight answers finish within SHUTDOWN_GRACE_SECONDS, new
work is refused, the process exits 0; past the grace period the answer is cut off and the process still exits
in bounded time (a chat user is told so). And a long ingest stops between documents, leaving none half-written."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import httpx
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from pydantic import SecretStr

from bots.base import CURSOR
from bots.discord import run as discord_run
from bots.settings import DiscordSettings, SlackSettings
from bots.slack import run as slack_run
from core.config import Settings
from core.ingest.pipeline import chunks_for
from core.ingest.sources import RawDoc
from core.store.client import open_store
from core.store.local import LocalWeaviate
from tests.fakes.discord_server import BOT_ID, BOT_USER, FakeDiscord, user
from tests.fakes.discord_server import TOKEN as DISCORD_TOKEN
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_server import APP_TOKEN, FakeSlack
from tests.fakes.slack_server import BOT_TOKEN as SLACK_BOT_TOKEN
from tests.fakes.slack_server import BOT_USER as SLACK_BOT_USER
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.support import REPO
from tests.support.adapters import adapter_settings
from tests.support.cli import cli_environment
from tests.support.ports import free_port_block
from tests.test_interrupted_ingest import count, write_corpus
from tests.test_slack import callback, envelope
from widget.apikeys import ApiKeys

QUESTION = "Which port does the Kestrel dashboard listen on?"
# The fake model sends the first piece, then stalls: SIGTERM lands while the answer streams.
SLOW = Reply(chunks=["The dashboard listens ", "on port 8470 [1]."], stall_after=1, stall_seconds=3)
STUCK = Reply(chunks=["The dashboard listens ", "on port 8470 [1]."], stall_after=1, stall_seconds=20)
# Never silent, and still streaming well past a short grace period: a piece every 0.1 s for about 8 s.
STEADY = Reply(chunks=["The dashboard listens ", *["and listens "] * 80, "on port 8470 [1]."], interval=0.1)
# A Discord channel of its own: the data directory is the session's, and a conversation with history would
# spend the scripted reply on rewriting the question.
CHANNEL = 260
SLACK_CHANNEL = "C0SHUTDOWN"  # likewise, and each run asks in a new thread of it (a conversation of its own)
EXIT_MARGIN = 5.0  # seconds past the grace period: CANCEL_SECONDS and closing the clients
# Event ids unique in the session: the de-duplicator (shared data dir) remembers those of the other tests.
_ids = itertools.count(int(time.time() * 1000))


class Process:
    """`switchboard ARGS` with stderr in a file (read while it runs, never a full pipe)."""

    def __init__(self, env: dict[str, str], tmp: Path, *args: str, stdio: bool = False):
        self.log = tmp / "stderr.log"
        pipe = subprocess.PIPE if stdio else subprocess.DEVNULL
        with self.log.open("w") as stderr:
            self.popen = subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "switchboard"), *args],
                env=env,
                cwd=tmp,
                stdin=pipe,
                stdout=pipe,
                stderr=stderr,
                text=True,
            )

    def stderr(self) -> str:
        return self.log.read_text()

    def terminate(self) -> None:
        self.popen.send_signal(signal.SIGTERM)
        self.terminated = time.monotonic()

    def exit_code(self, within: float) -> int:
        """How the process ended, which it must within `within` seconds of SIGTERM."""
        try:
            return self.popen.wait(max(0.0, self.terminated + within - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"still running {within:.0f} s after SIGTERM:\n{self.stderr()}") from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def bot_env(settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, grace: float, **extra: str) -> dict[str, str]:
    return cli_environment(
        settings,
        SWITCHBOARD_KB=widget_kb,
        LLM_BASE_URL=fake_llm.base_url,
        LLM_API_KEY="sk-test",
        LLM_MODEL="fake-chat",
        LLM_TIMEOUT="30",  # the stuck reply must outlast the grace period, not fall back to passages
        SHUTDOWN_GRACE_SECONDS=str(grace),
        **extra,
    )


# --- the web server ---------------------------------------------------------------------------------------


@pytest.fixture
def serve(settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, tmp_path: Path) -> Iterator[Any]:
    started: list[Process] = []

    def start(grace: float) -> tuple[Process, str]:
        port, _ = free_port_block()
        env = bot_env(settings, widget_kb, fake_llm, grace, SERVER_PORT=str(port))
        process = Process(env, tmp_path, "serve")
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.popen.poll() is None, process.stderr()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

    yield start
    for process in started:
        process.kill()


async def widget_chat(client: httpx.AsyncClient, url: str, first: asyncio.Event) -> list[str]:
    token = (await client.post(f"{url}/api/session", json={"bot": "default"})).json()["token"]
    body = {"message": QUESTION, "conversation_id": "shutdown-test"}
    kinds: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with client.stream("POST", f"{url}/api/chat", json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
                if kinds[-1] == "delta":
                    first.set()
    return kinds


async def openai_chat(client: httpx.AsyncClient, url: str, key: str, first: asyncio.Event) -> list[dict[str, Any]]:
    body = {"model": "default", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    chunks: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line.removeprefix("data: ")))
                first.set()
    return chunks


@dataclass
class Streaming:
    process: Process
    url: str
    client: httpx.AsyncClient
    widget: asyncio.Task[list[str]]
    api: asyncio.Task[list[dict[str, Any]]]


@contextlib.asynccontextmanager
async def streaming(
    serve: Any, settings: Settings, fake_llm: FakeOpenAI, grace: float, reply: Reply
) -> AsyncIterator[Streaming]:
    """A server with one widget and one /v1 answer streaming (their first pieces arrived), then SIGTERMed."""
    process, url = serve(grace=grace)
    key = ApiKeys(settings.data_dir / "api-keys.sqlite3").create(name=f"grace-{grace}", bots=())[0]
    fake_llm.enqueue(reply, reply)
    widget_first, openai_first = asyncio.Event(), asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as client:
        widget = asyncio.create_task(widget_chat(client, url, widget_first))
        api = asyncio.create_task(openai_chat(client, url, key, openai_first))
        await asyncio.wait_for(asyncio.gather(widget_first.wait(), openai_first.wait()), 20)
        process.terminate()
        yield Streaming(process, url, client, widget, api)
    assert "shutting down: 2 answers in flight" in process.stderr()
    assert "Traceback" not in process.stderr()


async def test_serve_finishes_streams_in_flight_and_refuses_new_requests(
    serve: Any, fake_llm: FakeOpenAI, settings: Settings
) -> None:
    async with streaming(serve, settings, fake_llm, 15, SLOW) as running:
        await asyncio.sleep(0.5)
        assert not running.widget.done() and not running.api.done(), "the answers are still streaming"
        with pytest.raises(httpx.ConnectError):  # uvicorn closed its socket: a new request is refused
            await running.client.get(f"{running.url}/healthz")
        kinds, chunks = await asyncio.gather(running.widget, running.api)
        assert kinds[0] == "sources" and kinds[-1] == "done"
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).endswith("port 8470 [1].")
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert running.process.exit_code(within=3 + EXIT_MARGIN) == 0, running.process.stderr()


@pytest.mark.parametrize("reply", [STUCK, STEADY], ids=["stalled", "streaming"])
async def test_serve_ends_streams_past_the_grace_period_with_an_error_event(
    serve: Any, fake_llm: FakeOpenAI, settings: Settings, reply: Reply
) -> None:
    async with streaming(serve, settings, fake_llm, 1, reply) as running:
        kinds, chunks = await asyncio.gather(running.widget, running.api)  # both end properly, before uvicorn cuts
        assert kinds[-1] == "error" and "done" not in kinds
        assert "restarting" in chunks[-1]["error"]["message"] and chunks[-1]["error"]["type"] == "server_error"
        assert running.process.exit_code(within=1 + EXIT_MARGIN) == 0, running.process.stderr()


# --- the Telegram bot (long polling) ----------------------------------------------------------------------


@pytest.fixture
def fake_tg() -> Iterator[FakeTelegram]:  # per test: an update left unread must not reach the next bot
    server = FakeTelegram().start()
    yield server
    server.stop()


@pytest.fixture
def telegram(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, fake_tg: FakeTelegram, tmp_path: Path
) -> Iterator[Any]:
    started: list[Process] = []

    def start(grace: float) -> Process:
        env = bot_env(settings, widget_kb, fake_llm, grace, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake_tg.base_url)
        process = Process(env, tmp_path, "bot", "telegram")
        started.append(process)
        deadline = time.monotonic() + 120
        while "polling" not in process.stderr():
            assert process.popen.poll() is None, process.stderr()
            assert time.monotonic() < deadline, "the bot did not start"
            time.sleep(0.1)
        return process

    yield start
    for process in started:
        process.kill()


def ask(fake: FakeTelegram, chat_id: int) -> None:
    fake.push({**fake.message(QUESTION, chat_id=chat_id), "update_id": next(_ids)})


def edits(fake: FakeTelegram, chat_id: int) -> list[dict[str, Any]]:
    return [c.params for c in fake.of("editMessageText", chat_id=chat_id)]


async def sigterm_mid_answer(process: Process, fake: FakeTelegram, chat_id: int, llm: FakeOpenAI, reply: Reply) -> None:
    """Ask in `chat_id`, wait for a preview edit (the model is sending `reply`), then SIGTERM."""
    llm.enqueue(reply)
    ask(fake, chat_id)
    await asyncio.to_thread(fake.wait_for, lambda: any(CURSOR in e["text"] for e in edits(fake, chat_id)), 20)
    process.terminate()


async def test_telegram_finishes_the_answer_in_flight_then_stops_polling(
    telegram: Any, fake_tg: FakeTelegram, fake_llm: FakeOpenAI
) -> None:
    process = telegram(grace=15)
    await sigterm_mid_answer(process, fake_tg, 9001, fake_llm, SLOW)
    await asyncio.sleep(1.0)
    ask(fake_tg, 9002)  # after SIGTERM: never fetched
    assert process.exit_code(within=3 + EXIT_MARGIN) == 0, process.stderr()
    final = edits(fake_tg, 9001)[-1]
    assert "port 8470 [1]" in final["text"] and "<b>Sources:</b>" in final["text"] and final["reply_markup"]
    assert not fake_tg.of("sendMessage", chat_id=9002)
    assert "shutting down: 1 answers in flight" in process.stderr()
    assert "Traceback" not in process.stderr()


async def test_telegram_tells_the_user_when_the_grace_period_cuts_an_answer_off(
    telegram: Any, fake_tg: FakeTelegram, fake_llm: FakeOpenAI
) -> None:
    process = telegram(grace=1)
    await sigterm_mid_answer(process, fake_tg, 9003, fake_llm, STUCK)
    assert process.exit_code(within=1 + EXIT_MARGIN) == 0, process.stderr()
    final = edits(fake_tg, 9003)[-1]["text"]
    assert final.startswith("The dashboard listens") and "interrupted" in final and CURSOR not in final


def in_process_bot(settings: Settings, widget_kb: str, fake_llm: FakeOpenAI) -> Settings:
    """A bot run in this process over the sample KB and the fake LLM, with a grace period it never reaches."""
    return settings.model_copy(
        update={
            "default_kb": widget_kb,
            "llm_base_url": fake_llm.base_url,
            "llm_api_key": SecretStr("sk-test"),
            "llm_model": "fake-chat",
            "shutdown_grace_seconds": 15.0,
        }
    )


# --- the Discord bot (in this process: discord.py's endpoints are patched to the fake) ----------------------


async def test_discord_leaves_the_gateway_then_finishes_the_answer_over_http(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI
) -> None:
    fake = await FakeDiscord(guild_id=100, channels=[CHANNEL]).start()
    bot_settings = in_process_bot(settings, widget_kb, fake_llm)
    token = adapter_settings(DiscordSettings, bot_token=SecretStr(DISCORD_TOKEN))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(discord.http.Route, "BASE", fake.api_base)
            patch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
            bot = asyncio.create_task(discord_run(bot_settings, token))
            await fake.until(lambda: fake.connected() or bot.done())
            fake_llm.enqueue(SLOW)
            alice = user(7001, "alice")
            question = fake.message(
                CHANNEL, f"<@{BOT_ID}> {QUESTION}", author=alice, mentions=[BOT_USER], message_id=next(_ids)
            )
            await fake.dispatch("MESSAGE_CREATE", question)
            await fake.until(lambda: any(CURSOR.strip() in c.body["content"] for c in fake.edited(CHANNEL)))
            os.kill(os.getpid(), signal.SIGTERM)  # caught by the bot's handler, as in `switchboard bot discord`
            await fake.until(lambda: not fake.connected())
            assert not any(c.body.get("components") for c in fake.edited(CHANNEL)), "left before the answer ended"
            await asyncio.wait_for(bot, 3 + EXIT_MARGIN)
    finally:
        await fake.stop()
    final = fake.edited(CHANNEL)[-1].body
    assert "port 8470" in final["content"] and "**Sources:**" in final["content"] and final["components"]


# --- the Slack bot (Socket Mode, in this process against the fake Slack's Web API and websocket) ------------


async def test_slack_closes_the_socket_then_finishes_the_streamed_answer(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI
) -> None:
    fake = FakeSlack().start()
    bot_settings = in_process_bot(settings, widget_kb, fake_llm)
    slack = adapter_settings(
        SlackSettings, bot_token=SecretStr(SLACK_BOT_TOKEN), app_token=SecretStr(APP_TOKEN), api_url=fake.api_url
    )
    thread = f"{next(_ids) / 1000:.6f}"  # the question's ts: a thread no other test (or run) has asked in

    def streaming() -> str | None:
        """The streamed message, once the first piece of the answer is in it."""
        for start in fake.of("chat.startStream", channel=SLACK_CHANNEL, thread_ts=thread):
            ts = start.result.get("ts")
            if any("dashboard" in c.params["markdown_text"] for c in fake.of("chat.appendStream", ts=ts)):
                return str(ts)
        return None

    bot = asyncio.create_task(slack_run(bot_settings, slack))
    try:
        await asyncio.to_thread(fake.wait_for, lambda: fake.connected or bot.done(), 120)
        assert not bot.done(), bot.result()
        fake_llm.enqueue(SLOW)
        text = f"<@{SLACK_BOT_USER}> {QUESTION}"
        question = {"type": "app_mention", "user": "U0ALICE", "text": text, "ts": thread, "event_ts": thread}
        fake.send(envelope("events_api", callback(question | {"channel": SLACK_CHANNEL})))
        ts = await asyncio.to_thread(fake.wait_for, streaming, 20)
        os.kill(os.getpid(), signal.SIGTERM)  # caught by the bot's handler, as in `switchboard bot slack`
        await asyncio.to_thread(fake.wait_for, lambda: not fake.connected, 5)
        assert not fake.of("chat.stopStream", ts=ts), "left before the answer ended"
        await asyncio.wait_for(bot, 3 + EXIT_MARGIN)
    finally:
        if not bot.done():
            bot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bot
        fake.stop()
    [stop] = fake.of("chat.stopStream", ts=ts)
    assert stop.result["ok"] and stop.result["message"]["text"].endswith("port 8470 [1].")
    sources, _, actions = stop.params["blocks"]
    assert sources["text"]["text"].startswith("*Sources:*") and actions["type"] == "actions"
    assert not fake.of("chat.postMessage") and not fake.of("chat.update"), "streamed to the end"


# --- MCP over stdio ---------------------------------------------------------------------------------------


def rpc(process: Process, message: dict[str, Any]) -> None:
    assert process.popen.stdin is not None
    process.popen.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
    process.popen.stdin.flush()


async def rpc_reply(process: Process, timeout: float) -> dict[str, Any]:
    assert process.popen.stdout is not None
    reply: dict[str, Any] = json.loads(
        await asyncio.wait_for(asyncio.to_thread(process.popen.stdout.readline), timeout)
    )
    return reply


async def test_mcp_stdio_answers_the_call_in_flight_then_exits(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    process = Process(bot_env(settings, widget_kb, fake_llm, 15), tmp_path, "mcp", stdio=True)
    try:
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
        rpc(process, {"id": 1, "method": "initialize", "params": hello})
        assert (await rpc_reply(process, 120))["id"] == 1
        rpc(process, {"method": "notifications/initialized"})
        asked = len(fake_llm.chat_requests())
        fake_llm.enqueue(SLOW)
        rpc(process, {"id": 2, "method": "tools/call", "params": {"name": "ask", "arguments": {"question": QUESTION}}})
        while len(fake_llm.chat_requests()) == asked:  # the model is answering
            await asyncio.sleep(0.05)
        process.terminate()
        reply = await rpc_reply(process, 3 + EXIT_MARGIN)
        assert process.exit_code(within=3 + EXIT_MARGIN) == 0, process.stderr()
    finally:
        process.kill()
    assert reply["id"] == 2 and "port 8470 [1]" in reply["result"]["content"][0]["text"]
    assert "shutting down: 1 answers in flight" in process.stderr()


# --- ingest -----------------------------------------------------------------------------------------------


async def test_ingest_stops_between_documents(settings: Settings, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    paths = write_corpus(corpus, docs=16)
    kb = "shutdown_ingest"
    env = cli_environment(settings, EMBED_BATCH_SIZE="3")  # batches of 6 chunks, documents of 8
    process = Process(env, tmp_path, "ingest", str(corpus), "--kb", kb)
    local = LocalWeaviate.from_settings(settings)
    try:
        deadline = time.monotonic() + 120
        while count(local, kb) < 6:
            assert process.popen.poll() is None, process.stderr()
            assert time.monotonic() < deadline, "no chunks written in time"
            await asyncio.sleep(0.05)
        process.terminate()
        assert process.exit_code(within=30) == 128 + signal.SIGTERM, process.stderr()
    finally:
        process.kill()
    last = process.stderr().strip().splitlines()[-1]
    assert last.startswith("error: stopped before ") and "run the same command again" in last
    assert "Traceback" not in process.stderr()
    async with open_store(settings) as store:
        stored = await store.stored_chunks(kb)
        await store.delete_kb(kb)
    assert 0 < len(stored) < len(paths)
    for path in paths:
        raw = RawDoc(source=str(path), origin=str(corpus), suffix=".md", data=path.read_bytes(), explicit=False)
        chunks = chunks_for(raw, settings)
        expected = {(c.position, c.content_hash) for c in chunks}
        have = {(c.position, c.content_hash) for c in stored.get(chunks[0].doc_id, {}).values()}
        assert have in (set(), expected), f"{path.name} is half-written"
